--- :QuillChat, :QuillHistory and :QuillClear: `quill/chat` streamed into a scratch buffer, the
--- stored history of the workspace folder, and clearing it.
---
--- The chat buffer is one markdown scratch buffer (`quill://chat`) that keeps the conversation
--- of this Neovim session; each reply grows in place as `{delta}` values arrive. Buffer
--- variables tell scripts (and the tests) where a turn stands: `b:quill_chat_state` is
--- "streaming", "done" or "error", `b:quill_chat_deltas` counts the deltas of the last reply.

local client_mod = require('quill.client')

local M = {}

local CHAT_NAME = 'quill://chat'
local HISTORY_NAME = 'quill://history'

--- A scratch buffer named `name`, shown in a split (reused when it exists).
---@param name string
---@return integer bufnr
local function scratch(name)
  local buf = vim.fn.bufnr(name)
  if buf == -1 then
    buf = vim.api.nvim_create_buf(true, true)
    vim.api.nvim_buf_set_name(buf, name)
    vim.bo[buf].filetype = 'markdown'
    vim.bo[buf].swapfile = false
  end
  if vim.fn.bufwinid(buf) == -1 then
    vim.cmd('botright split')
    vim.api.nvim_win_set_buf(0, buf)
    vim.cmd('wincmd p')
  end
  return buf
end

---@param buf integer
---@param lines string[]
local function append(buf, lines)
  local last = vim.api.nvim_buf_line_count(buf)
  local empty = last == 1 and vim.api.nvim_buf_get_lines(buf, 0, 1, false)[1] == ''
  vim.api.nvim_buf_set_lines(buf, empty and 0 or last, -1, false, lines)
end

--- Add `text` at the end of the buffer, continuing its last line.
---@param buf integer
---@param text string
local function extend(buf, text)
  local last = vim.api.nvim_buf_line_count(buf)
  local tail = vim.api.nvim_buf_get_lines(buf, last - 1, last, false)[1]
  local pieces = vim.split(tail .. text, '\n', { plain = true })
  vim.api.nvim_buf_set_lines(buf, last - 1, last, false, pieces)
  local win = vim.fn.bufwinid(buf)
  if win ~= -1 then
    vim.api.nvim_win_set_cursor(win, { vim.api.nvim_buf_line_count(buf), 0 })
  end
end

--- The LSP parameters for a chat turn about the current buffer (and selection, if any).
---@param client vim.lsp.Client
---@param message string
---@param range? {line1: integer, line2: integer}
local function chat_params(client, message, range)
  local src = vim.api.nvim_get_current_buf()
  local params = { message = message, workspaceFolder = client_mod.workspace_folder(client) }
  if vim.bo[src].buftype == '' and vim.api.nvim_buf_get_name(src) ~= '' then
    params.textDocument = { uri = vim.uri_from_bufnr(src) }
    if range then
      local last = vim.api.nvim_buf_get_lines(src, range.line2 - 1, range.line2, false)[1] or ''
      params.range = {
        start = { line = range.line1 - 1, character = 0 },
        ['end'] = { line = range.line2 - 1, character = vim.str_utfindex(last, 'utf-16') },
      }
    end
  end
  return params
end

local function finish(buf, err, result, streamed)
  if err then
    vim.b[buf].quill_chat_state = 'error'
    append(buf, { '', '> Quill: ' .. (err.message or vim.inspect(err)), '' })
    vim.notify('Quill chat: ' .. (err.message or 'failed'), vim.log.levels.ERROR)
    return
  end
  -- A server that does not stream (or a client that missed a delta) still shows the reply.
  if result.reply and result.reply ~= streamed then
    local start = vim.b[buf].quill_reply_line
    vim.api.nvim_buf_set_lines(buf, start, -1, false, vim.split(result.reply, '\n'))
  end
  local usage = result.usage or {}
  append(buf, {
    '',
    ('_%s · %s prompt + %s reply tokens_'):format(
      result.finishReason or '?',
      usage.promptTokens or '?',
      usage.completionTokens or '?'
    ),
    '',
  })
  vim.b[buf].quill_chat_reply = result.reply
  vim.b[buf].quill_chat_state = 'done'
end

--- Ask the model `message`, about the current buffer (and lines `range`, if given); the reply
--- streams into the chat buffer.
---@param opts quill.Options
---@param message string
---@param range? {line1: integer, line2: integer}
function M.chat(opts, message, range)
  client_mod.with_client(opts, function(client)
    local params = chat_params(client, message, range)
    local buf = scratch(CHAT_NAME)
    append(buf, { '## You', '', message, '', '## Quill', '' })
    vim.b[buf].quill_reply_line = vim.api.nvim_buf_line_count(buf) - 1
    vim.b[buf].quill_chat_state = 'streaming'
    vim.b[buf].quill_chat_deltas = 0
    local streamed = {}
    client_mod.request_streaming(client, 'quill/chat', params, function(value)
      local delta = type(value) == 'table' and value.delta
      if type(delta) == 'string' and delta ~= '' then
        table.insert(streamed, delta)
        vim.b[buf].quill_chat_deltas = #streamed
        extend(buf, delta)
      end
    end, function(err, result)
      finish(buf, err, result, table.concat(streamed))
    end)
  end)
end

---@param turns {role: string, content: string, time: number}[]
---@return string[]
local function render_history(turns)
  if #turns == 0 then
    return { '_No chat history for this workspace folder._' }
  end
  local lines = {}
  for _, turn in ipairs(turns) do
    local who = turn.role == 'user' and 'You' or 'Quill'
    local when = turn.time and os.date('%Y-%m-%d %H:%M', math.floor(turn.time)) or ''
    vim.list_extend(lines, { ('## %s · %s'):format(who, when), '' })
    vim.list_extend(lines, vim.split(turn.content or '', '\n'))
    table.insert(lines, '')
  end
  return lines
end

--- Show the stored chat history of the workspace folder in a scratch buffer.
---@param opts quill.Options
function M.history(opts)
  client_mod.with_client(opts, function(client)
    local params = { workspaceFolder = client_mod.workspace_folder(client) }
    client:request('quill/history', params, function(err, result)
      if err then
        vim.notify('Quill history: ' .. err.message, vim.log.levels.ERROR)
        return
      end
      local buf = scratch(HISTORY_NAME)
      vim.api.nvim_buf_set_lines(buf, 0, -1, false, render_history(result.turns or {}))
      vim.b[buf].quill_history_turns = #(result.turns or {})
    end)
  end)
end

--- Forget the stored chat history of the workspace folder.
---@param opts quill.Options
function M.clear(opts)
  client_mod.with_client(opts, function(client)
    local params = { workspaceFolder = client_mod.workspace_folder(client) }
    client:request('quill/clearHistory', params, function(err)
      if err then
        vim.notify('Quill: ' .. err.message, vim.log.levels.ERROR)
        return
      end
      local buf = vim.fn.bufnr(CHAT_NAME)
      if buf ~= -1 then
        vim.api.nvim_buf_set_lines(buf, 0, -1, false, {})
      end
      vim.notify('Quill: chat history cleared')
    end)
  end)
end

return M
