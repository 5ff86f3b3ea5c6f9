/**
 * The Quill status bar item, fed by `quill/status`: loading progress (download, convert, load)
 * while the model comes up, then model, device, dtype and how many suggestions were accepted.
 * It asks often while the server is starting or loading and rarely once the model is ready.
 */
import * as vscode from 'vscode';
import { LanguageClient } from 'vscode-languageclient/node';
import { StatusRequest, StatusResult } from './protocol';

const LOADING_POLL_MS = 500;
const READY_POLL_MS = 10_000;

export function describe(status: StatusResult): { text: string; tooltip: string } {
  const { state, model, device, dtype, progress, acceptance } = status;
  if (state === 'error') {
    return { text: '$(error) Quill', tooltip: `Quill: ${status.error ?? 'the model failed to load'}` };
  }
  if (state !== 'ready') {
    const percent = progress && progress.total > 0 ? ` ${Math.floor((100 * progress.done) / progress.total)}%` : '';
    const phase = progress?.phase ?? state;
    return { text: `$(loading~spin) Quill: ${phase}${percent}`, tooltip: `Quill is ${state} ${model ?? ''}` };
  }
  return {
    text: '$(sparkle) Quill',
    tooltip: `Quill: ${model} on ${device} (${dtype}); ${acceptance.accepted} of ${acceptance.shown} suggestions accepted`,
  };
}

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  private timer: NodeJS.Timeout | undefined;
  private disposed = false;

  constructor(private readonly getClient: () => LanguageClient | undefined) {
    this.item.command = 'quill.showStatus';
    this.item.text = '$(loading~spin) Quill';
    this.item.show();
  }

  /** Ask for the status now, then keep asking at the pace its state calls for. */
  async refresh(): Promise<StatusResult | undefined> {
    if (this.timer) {
      clearTimeout(this.timer);
    }
    let status: StatusResult | undefined;
    const client = this.getClient();
    if (client?.isRunning()) {
      try {
        status = await client.sendRequest(StatusRequest);
        const { text, tooltip } = describe(status);
        this.item.text = text;
        this.item.tooltip = tooltip;
      } catch (error) {
        this.item.text = '$(warning) Quill';
        this.item.tooltip = `Quill: ${String(error)}`;
      }
    } else {
      this.item.text = '$(circle-slash) Quill';
      this.item.tooltip = 'Quill: the language server is not running';
    }
    if (!this.disposed) {
      const ready = status?.state === 'ready' || status?.state === 'error';
      this.timer = setTimeout(() => void this.refresh(), ready ? READY_POLL_MS : LOADING_POLL_MS);
    }
    return status;
  }

  dispose(): void {
    this.disposed = true;
    if (this.timer) {
      clearTimeout(this.timer);
    }
    this.item.dispose();
  }
}
