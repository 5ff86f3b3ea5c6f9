/**
 * Quill's custom requests (the `quill/` namespace in DESIGN.md) as typed JSON-RPC messages, and
 * the one helper that streams a chat reply. Imports only `vscode-languageserver-protocol`, so the
 * Node protocol test drives the server with exactly these definitions, outside VS Code.
 *
 *   quill/chat         {message, textDocument?, range?, workspaceFolder?} -> {reply, finishReason, usage}
 *                      streams {delta} through $/progress on the request's partialResultToken
 *   quill/history      {workspaceFolder?} -> {turns: [{role, content, time}]}
 *   quill/clearHistory {workspaceFolder?}
 *   quill/status       -> {state, model, device, dtype, progress, acceptance}
 */
import {
  CancellationToken,
  Disposable,
  NotificationHandler,
  ProgressToken,
  ProgressType,
  Range,
  RequestType,
  RequestType0,
  TextDocumentIdentifier,
} from 'vscode-languageserver-protocol';

export interface ChatParams {
  message: string;
  textDocument?: TextDocumentIdentifier;
  range?: Range;
  /** URI of the workspace folder whose history the turn belongs to. */
  workspaceFolder?: string;
  partialResultToken?: ProgressToken;
}

export interface ChatResult {
  reply: string;
  finishReason: 'stop' | 'length' | 'cancelled';
  usage: { promptTokens: number; completionTokens: number };
}

export interface ChatDelta {
  delta: string;
}

export interface HistoryParams {
  workspaceFolder?: string;
}

export interface Turn {
  role: 'user' | 'assistant';
  content: string;
  /** Seconds since the epoch. */
  time: number;
}

export interface StatusResult {
  state: 'starting' | 'loading' | 'ready' | 'error';
  model: string | null;
  device: string | null;
  dtype: string | null;
  progress: { phase: string; done: number; total: number } | null;
  acceptance: { shown: number; accepted: number };
  error?: string | null;
}

export const ChatRequest = new RequestType<ChatParams, ChatResult, void>('quill/chat');
export const HistoryRequest = new RequestType<HistoryParams, { turns: Turn[] }, void>('quill/history');
export const ClearHistoryRequest = new RequestType<HistoryParams, unknown, void>('quill/clearHistory');
export const StatusRequest = new RequestType0<StatusResult, void>('quill/status');
export const chatProgress = new ProgressType<ChatDelta>();

/** The command each inline completion item carries; executing it counts the acceptance. */
export const ACCEPT_COMPLETION_COMMAND = 'quill.acceptCompletion';

/** What both `LanguageClient` (in VS Code) and a bare `ProtocolConnection` (in tests) offer. */
export interface StreamingConnection {
  sendRequest<P, R, E>(type: RequestType<P, R, E>, params: P, token?: CancellationToken): Promise<R>;
  onProgress<P>(type: ProgressType<P>, token: ProgressToken, handler: NotificationHandler<P>): Disposable;
}

let nextToken = 0;

/**
 * Send `quill/chat` with a fresh partialResultToken and hand each streamed delta to `onDelta`
 * as it arrives; resolves with the final result (whose `reply` is all the deltas joined).
 */
export async function chatStreaming(
  connection: StreamingConnection,
  params: Omit<ChatParams, 'partialResultToken'>,
  onDelta: (delta: string) => void,
  token?: CancellationToken,
): Promise<ChatResult> {
  const partialResultToken = `quill-chat-${process.pid}-${++nextToken}`;
  const subscription = connection.onProgress(chatProgress, partialResultToken, (value) => {
    if (value && typeof value.delta === 'string' && value.delta !== '') {
      onDelta(value.delta);
    }
  });
  try {
    return await connection.sendRequest(ChatRequest, { ...params, partialResultToken }, token);
  } finally {
    subscription.dispose();
  }
}
