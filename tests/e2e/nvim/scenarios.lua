--- Real-editor scenarios for the Quill Neovim plugin, run by tests/e2e/test_nvim_client.py:
---
---   nvim --headless -u NONE -i NONE -n --cmd 'set rtp^=editor-clients/nvim' -c 'luafile THIS'
---
--- Environment: QUILL_E2E_SCENARIO (inline | inline_while_loading | chat | history), QUILL_E2E_RESULT (JSON written
--- here), QUILL_E2E_CMD (JSON list: the server command), QUILL_E2E_SETTINGS (JSON: `quill`
--- settings), QUILL_E2E_INLINE (auto | virtual_text), QUILL_E2E_FILE (the Python file to open).
--- Each scenario records what a user would see; the pytest side makes the assertions.

local H = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)), 'harness.lua'))
local R = H.result

vim.cmd('filetype on')
-- The scenario types its own indentation; Neovim's default 'autoindent' would add a tab to it.
vim.o.autoindent = false
vim.o.expandtab = true
require('quill').setup({
  cmd = vim.json.decode(assert(os.getenv('QUILL_E2E_CMD'))),
  settings = vim.json.decode(os.getenv('QUILL_E2E_SETTINGS') or '{}'),
  inline = os.getenv('QUILL_E2E_INLINE') or 'auto',
})
R.nvim_version = tostring(vim.version())
R.progress = {}
vim.api.nvim_create_autocmd('LspProgress', {
  callback = function(args)
    local value = args.data.params.value or {}
    table.insert(R.progress, {
      kind = value.kind,
      title = value.title,
      message = value.message,
      percentage = value.percentage,
      lsp_status = vim.lsp.status(),
    })
  end,
})

--- Ask `method` again whenever the last answer came back, until `pred(result)` holds.
local function wait_request(what, method, params, pred)
  local last, in_flight, sent_at = nil, false, 0
  return H.wait_for(what, function()
    local client = require('quill.client').get()
    -- One request at a time, at most every 100 ms: the server shares the CPU with the model.
    if client and client.initialized and not in_flight and vim.uv.now() - sent_at >= 100 then
      in_flight, sent_at = true, vim.uv.now()
      client:request(method, params, function(_, result)
        in_flight, last = false, result
      end)
    end
    if last and last.state == 'error' then
      error('the server reports an error: ' .. tostring(last.error))
    end
    return last and pred(last) and last
  end, 300000)
end

local function wait_status(what, pred)
  return wait_request(what, 'quill/status', {}, pred)
end

local function open_file_and_wait_ready()
  vim.cmd.edit(vim.fn.fnameescape(assert(os.getenv('QUILL_E2E_FILE'))))
  H.wait_for('the quill client to attach', function()
    return vim.lsp.get_clients({ bufnr = 0, name = 'quill' })[1]
  end)
  return wait_status('the model to load', function(s)
    return s.state == 'ready'
  end)
end

--- The ghost text on display in the current buffer: its lines, or nil.
local function ghost_text(namespace)
  local ns = vim.api.nvim_get_namespaces()[namespace]
  if not ns then
    return nil
  end
  for _, mark in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do
    local details = mark[4]
    local lines = { '' }
    for _, chunk in ipairs(details.virt_text or {}) do
      lines[1] = lines[1] .. chunk[1]
    end
    for _, vline in ipairs(details.virt_lines or {}) do
      local text = ''
      for _, chunk in ipairs(vline) do
        text = text .. chunk[1]
      end
      table.insert(lines, text)
    end
    if table.concat(lines, '\n') ~= '' then
      return { lines = lines, row = mark[2], col = mark[3] }
    end
  end
end

local scenarios = {}

--- Wait for ghost text in insert mode, accept it with <Tab>, leave insert mode and wait until
--- the server has counted the acceptance; record what the user saw and got.
local function accept_ghost(namespace, timeout_ms)
  local ghost = H.wait_for('a ghost-text suggestion', function()
    return vim.api.nvim_get_mode().mode == 'i' and ghost_text(namespace)
  end, timeout_ms)
  R.ghost = ghost
  R.line_before = vim.api.nvim_get_current_line()
  R.row = vim.api.nvim_win_get_cursor(0)[1] - 1
  H.type('<Tab>')
  H.wait_for('the suggestion to be inserted', function()
    return vim.api.nvim_get_current_line() ~= R.line_before
  end)
  R.ghost_after_accept = ghost_text(namespace)
  H.type('<Esc>')
  H.wait_for('normal mode', function()
    return vim.api.nvim_get_mode().mode == 'n'
  end)
  R.lines_after = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  local status = wait_status('the server to count the acceptance', function(s)
    return s.acceptance.accepted > R.accepted_before
  end)
  R.acceptance_after = status.acceptance
  R.completions_after = status.completions
end

local function inline_namespace()
  R.builtin = require('quill.inline').builtin_available(require('quill').options)
  return R.builtin and 'nvim.lsp.inline_completion' or 'quill.ghost'
end

function scenarios.inline()
  local ready = open_file_and_wait_ready()
  R.model_device = ready.device
  R.accepted_before = ready.acceptance.accepted
  local namespace = inline_namespace()
  -- A user finishing the last line of the function.
  H.type(os.getenv('QUILL_E2E_KEYS') or 'Go    return fib')
  accept_ghost(namespace)
end

--- The user opens a file and enters insert mode while the server still loads the model, then
--- types nothing more: the one automatic request Neovim sends must bring the ghost text.
function scenarios.inline_while_loading()
  R.load_ended = false
  vim.api.nvim_create_autocmd('LspProgress', {
    pattern = 'end',
    callback = function()
      R.load_ended = true
    end,
  })
  vim.cmd.edit(vim.fn.fnameescape(assert(os.getenv('QUILL_E2E_FILE'))))
  local client = H.wait_for('the quill client to attach', function()
    return vim.lsp.get_clients({ bufnr = 0, name = 'quill' })[1]
  end)
  -- Note each inline request as Neovim sends it, whether the load had ended by then, and how
  -- many items its answer held (Neovim's own handler still gets every answer).
  R.inline_requests = {}
  local request = client.request
  client.request = function(self, method, params, handler, ...)
    if method ~= 'textDocument/inlineCompletion' then
      return request(self, method, params, handler, ...)
    end
    local sent = { load_ended = R.load_ended }
    table.insert(R.inline_requests, sent)
    return request(self, method, params, function(err, result, ...)
      sent.items = result and #(result.items or result) or vim.NIL
      return handler(err, result, ...)
    end, ...)
  end
  R.accepted_before = 0
  local namespace = inline_namespace()
  H.type(os.getenv('QUILL_E2E_KEYS') or 'GA')
  H.wait_for('insert mode', function()
    return vim.api.nvim_get_mode().mode == 'i'
  end)
  -- An empty answer would leave the user without ghost text for good: fail at once, not after
  -- the whole wait.
  H.wait_for('an answer with a suggestion', function()
    local last = R.inline_requests[#R.inline_requests]
    if last and last.items == 0 then
      error('the server answered the inline request empty')
    end
    return last and last.items
  end, 600000)
  accept_ghost(namespace)
end

--- Run :QuillChat (`cmd`) and wait for its reply; record every state of the buffer while the
--- reply streamed in (from `on_lines`, so no update is missed however fast deltas come).
local function chat_turn(cmd, turn)
  local before = vim.fn.bufnr('quill://chat') ~= -1 and #vim.fn.getbufline('quill://chat', 1, '$')
    or 0
  vim.cmd(cmd)
  local buf = vim.fn.bufnr('quill://chat')
  assert(buf ~= -1 and vim.b[buf].quill_chat_state == 'streaming', ':QuillChat opened no chat buffer')
  local snapshots = {}
  vim.api.nvim_buf_attach(buf, false, {
    on_lines = function()
      if vim.b[buf].quill_chat_state ~= 'streaming' then
        return true -- detach: the reply is complete
      end
      local lines = vim.api.nvim_buf_get_lines(buf, before, -1, false)
      table.insert(snapshots, { deltas = vim.b[buf].quill_chat_deltas, text = table.concat(lines, '\n') })
    end,
  })
  H.wait_for('the reply of turn ' .. turn, function()
    local state = vim.b[buf].quill_chat_state
    if state == 'error' then
      error('the chat failed: ' .. table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n'))
    end
    return state == 'done'
  end, 300000)
  return {
    reply = vim.b[buf].quill_chat_reply,
    deltas = vim.b[buf].quill_chat_deltas,
    snapshots = snapshots,
    lines = vim.api.nvim_buf_get_lines(buf, before, -1, false),
  }
end

function scenarios.chat()
  open_file_and_wait_ready()
  local file_win = vim.api.nvim_get_current_win()
  R.turns = {}
  table.insert(R.turns, chat_turn('QuillChat ' .. assert(os.getenv('QUILL_E2E_MESSAGE')), 1))
  vim.api.nvim_set_current_win(file_win)
  table.insert(R.turns, chat_turn('1,4QuillChat ' .. assert(os.getenv('QUILL_E2E_MESSAGE2')), 2))
  R.chat_buffer = vim.fn.getbufline('quill://chat', 1, '$')
end

local function show_history()
  local buf = vim.fn.bufnr('quill://history')
  if buf ~= -1 then
    vim.b[buf].quill_history_turns = nil
  end
  vim.cmd('QuillHistory')
  H.wait_for(':QuillHistory', function()
    local b = vim.fn.bufnr('quill://history')
    return b ~= -1 and vim.b[b].quill_history_turns ~= nil
  end)
  return vim.fn.getbufline('quill://history', 1, '$')
end

function scenarios.history()
  -- A fresh Neovim with no file open: the commands must start the server themselves.
  R.history = show_history()
  local status = require('quill.status')
  vim.cmd('QuillStatus')
  H.wait_for(':QuillStatus', function()
    return status.last
  end)
  R.status_line = status.format(status.last)
  local client = require('quill.client').get()
  R.workspace_folder = require('quill.client').workspace_folder(client)
  vim.cmd('QuillClear')
  wait_request('the history to be cleared', 'quill/history', {
    workspaceFolder = R.workspace_folder,
  }, function(result)
    return #result.turns == 0
  end)
  R.history_after_clear = show_history()
end

local name = assert(os.getenv('QUILL_E2E_SCENARIO'), '$QUILL_E2E_SCENARIO is not set')
R.scenario = name
H.run(assert(scenarios[name], 'unknown scenario ' .. name), tonumber(os.getenv('QUILL_E2E_WATCHDOG_MS')) or 540000)
