--- Ghost text for Neovim before 0.12 (or `inline = "virtual_text"`): requests
--- `textDocument/inlineCompletion` (or, from servers without it, `textDocument/completion`)
--- while typing, shows the first item as virtual text at the cursor, and inserts it on accept,
--- then runs the item's command (`quill.acceptCompletion`) like the built-in does.
---
--- State per buffer lives in `state[buf]`: the debounce timer, the changedtick a request was made
--- at (a reply for an older text is dropped), and the item on display.

local M = {}

M.namespace = vim.api.nvim_create_namespace('quill.ghost')

---@class quill.GhostState
---@field client vim.lsp.Client
---@field timer uv.uv_timer_t
---@field tick integer changedtick when the last request was sent
---@field pending? integer id of the request in flight (cancelled when the user leaves insert mode)
---@field item? {text: string, range?: lsp.Range, command?: lsp.Command, row: integer, col: integer}

---@type table<integer, quill.GhostState>
local state = {}

--- The first item of an inlineCompletion or completion result, as {text, range?, command?}.
local function first_item(method, result)
  if not result then
    return nil
  end
  local items = result.items or result
  local item = items[1]
  if not item then
    return nil
  end
  if method == 'textDocument/inlineCompletion' then
    local text = type(item.insertText) == 'table' and item.insertText.value or item.insertText
    return { text = text, range = item.range, command = item.command }
  end
  local edit = item.textEdit
  local text = (edit and edit.newText) or item.insertText or item.label
  return { text = text, range = edit and (edit.range or edit.replace), command = item.command }
end

--- What is left to show of `text` once the part already typed on the line is skipped.
local function visible_suffix(buf, item, row, col, offset_encoding)
  local text = item.text
  if item.range then
    local line = vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ''
    local start = vim.str_byteindex(line, offset_encoding, item.range.start.character, false)
    local typed = line:sub(start + 1, col)
    if text:sub(1, #typed) ~= typed then
      return nil
    end
    text = text:sub(#typed + 1)
  end
  return text
end

function M.dismiss(buf)
  local s = state[buf]
  if not s or not s.item then
    return false
  end
  s.item = nil
  vim.api.nvim_buf_clear_namespace(buf, M.namespace, 0, -1)
  return true
end

local function show(buf, item)
  local s = state[buf]
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  row = row - 1
  local text = visible_suffix(buf, item, row, col, s.client.offset_encoding)
  M.dismiss(buf)
  if not text or text == '' then
    return
  end
  local lines = vim.split(text, '\n', { plain = true })
  local virt_lines = {}
  for i = 2, #lines do
    table.insert(virt_lines, { { lines[i], 'Comment' } })
  end
  vim.api.nvim_buf_set_extmark(buf, M.namespace, row, col, {
    virt_text = { { lines[1], 'Comment' } },
    virt_text_pos = 'inline',
    virt_lines = virt_lines,
    hl_mode = 'combine',
  })
  item.row, item.col, item.shown = row, col, text
  s.item = item
end

local function request(buf)
  local s = state[buf]
  if not s or not vim.api.nvim_buf_is_valid(buf) then
    return
  end
  local client = s.client
  local method = client:supports_method('textDocument/inlineCompletion')
      and 'textDocument/inlineCompletion'
    or 'textDocument/completion'
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = method == 'textDocument/inlineCompletion' and { triggerKind = 2 }
    or { triggerKind = 1 }
  local tick = vim.api.nvim_buf_get_changedtick(buf)
  s.tick = tick
  local sent, id
  sent, id = client:request(method, params, function(err, result)
    if s.pending == id then
      s.pending = nil
    end
    -- Drop replies for text that has changed since, or once the user left the buffer or insert mode.
    if err or s.tick ~= tick or vim.api.nvim_buf_get_changedtick(buf) ~= tick then
      return
    end
    local here = vim.api.nvim_get_current_buf() == buf
    if not here or not vim.startswith(vim.api.nvim_get_mode().mode, 'i') then
      return
    end
    local item = first_item(method, result)
    if item and item.text then
      show(buf, item)
    end
  end, buf)
  s.pending = sent and id or nil
end

--- Cancel the request in flight: while the model loads the server keeps the newest request
--- waiting for it, and a user who left insert mode no longer wants that suggestion.
local function cancel_pending(buf)
  local s = state[buf]
  if s and s.pending then
    -- pcall: on LspDetach the client may be shutting down, and nothing is left to cancel then.
    pcall(s.client.cancel_request, s.client, s.pending)
    s.pending = nil
  end
end

--- Insert the suggestion on display; false when there is none (the key then types itself).
function M.accept(buf)
  local s = state[buf]
  local item = s and s.item
  if not item then
    return false
  end
  M.dismiss(buf)
  vim.schedule(function()
    local lines = vim.split(item.shown, '\n', { plain = true })
    vim.api.nvim_buf_set_text(buf, item.row, item.col, item.row, item.col, lines)
    local last = #lines == 1 and item.col + #lines[1] or #lines[#lines]
    vim.api.nvim_win_set_cursor(0, { item.row + #lines, last })
    if item.command then
      s.client:exec_cmd(item.command, { bufnr = buf })
    end
  end)
  return true
end

---@param buf integer
---@param client vim.lsp.Client
---@param opts quill.Options
function M.attach(buf, client, opts)
  if state[buf] then
    return
  end
  local timer = assert(vim.uv.new_timer())
  state[buf] = { client = client, timer = timer, tick = -1 }
  local group = vim.api.nvim_create_augroup('quill.ghost.' .. buf, { clear = true })
  vim.api.nvim_create_autocmd({ 'TextChangedI', 'InsertEnter', 'CursorMovedI' }, {
    group = group,
    buffer = buf,
    callback = function()
      M.dismiss(buf)
      timer:stop()
      timer:start(opts.debounce_ms, 0, vim.schedule_wrap(function()
        request(buf)
      end))
    end,
  })
  vim.api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = buf,
    callback = function()
      timer:stop()
      cancel_pending(buf)
      M.dismiss(buf)
    end,
  })
  vim.api.nvim_create_autocmd({ 'BufWipeout', 'LspDetach' }, {
    group = group,
    buffer = buf,
    callback = function()
      timer:stop()
      cancel_pending(buf)
      timer:close()
      state[buf] = nil
      vim.api.nvim_del_augroup_by_id(group)
    end,
  })
end

return M
