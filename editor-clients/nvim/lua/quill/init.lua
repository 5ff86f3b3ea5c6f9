--- Quill for Neovim: `require("quill").setup({ cmd = …, settings = … })`.
---
--- Registers the `quill` language server with `vim.lsp.config`/`vim.lsp.enable` (Neovim 0.11+),
--- turns on inline completions (built-in on 0.12, our own ghost text before), and adds
--- :QuillChat, :QuillHistory, :QuillClear and :QuillStatus.

local M = {}

---@class quill.Keys
---@field accept string? insert-mode key that accepts the suggestion (falls back to itself)
---@field next string? next suggestion (0.12 built-in only)
---@field prev string? previous suggestion (0.12 built-in only)
---@field dismiss string? hide the suggestion (ghost-text fallback only)

---@class quill.Options
---@field cmd string[] command that starts the server over stdio
---@field settings table the `quill` settings tree, sent as initializationOptions and settings
---@field root_markers string[] files that mark the workspace folder (chat history is per folder)
---@field filetypes string[]? nil = every file buffer
---@field inline boolean|"auto"|"virtual_text" false turns inline completion off
---@field keys quill.Keys
---@field debounce_ms integer ghost-text fallback: wait this long after typing before asking
---@field progress boolean echo the model's download/convert/load progress

---@type quill.Options
M.defaults = {
  cmd = { 'quill', 'serve' },
  settings = {},
  root_markers = { '.git', 'pyproject.toml', 'package.json', 'Cargo.toml', 'go.mod' },
  filetypes = nil,
  inline = 'auto',
  keys = { accept = '<Tab>', next = '<M-]>', prev = '<M-[>', dismiss = '<C-]>' },
  debounce_ms = 150,
  progress = true,
}

---@type quill.Options
M.options = vim.deepcopy(M.defaults)

local function create_commands()
  local chat = require('quill.chat')
  vim.api.nvim_create_user_command('QuillChat', function(args)
    local range = args.range > 0 and { line1 = args.line1, line2 = args.line2 } or nil
    local message = args.args
    if message == '' then
      if not range then
        vim.ui.input({ prompt = 'Quill: ' }, function(input)
          if input and input ~= '' then
            chat.chat(M.options, input)
          end
        end)
        return
      end
      message = 'Explain this code.'
    end
    chat.chat(M.options, message, range)
  end, { nargs = '*', range = true, desc = 'Quill: chat (with a range: about the selected lines)' })
  vim.api.nvim_create_user_command('QuillHistory', function()
    chat.history(M.options)
  end, { desc = "Quill: show this workspace folder's chat history" })
  vim.api.nvim_create_user_command('QuillClear', function()
    chat.clear(M.options)
  end, { desc = "Quill: clear this workspace folder's chat history" })
  vim.api.nvim_create_user_command('QuillStatus', function()
    require('quill.status').show(M.options)
  end, { desc = 'Quill: model, device, load progress and accepted suggestions' })
end

--- Push changed settings to the running server (`workspace/didChangeConfiguration`).
---@param settings table the new `quill` settings tree
function M.update_settings(settings)
  M.options.settings = settings
  settings = require('quill.client').as_object(settings)
  vim.lsp.config('quill', { init_options = settings, settings = { quill = settings } })
  local client = require('quill.client').get()
  if client then
    client.settings = { quill = settings }
    client:notify('workspace/didChangeConfiguration', { settings = client.settings })
  end
end

---@param opts? quill.Options
function M.setup(opts)
  if vim.fn.has('nvim-0.11') ~= 1 then
    vim.notify('quill.nvim needs Neovim 0.11 or newer', vim.log.levels.ERROR)
    return
  end
  M.options = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  if opts and opts.settings then
    M.options.settings = opts.settings -- a settings tree replaces, never merges with, {}
  end
  vim.lsp.config('quill', require('quill.client').lsp_config(M.options))
  vim.lsp.enable('quill')
  require('quill.inline').setup(M.options)
  require('quill.status').setup(M.options)
  create_commands()
end

--- For a statusline: the Quill client's progress (from `vim.lsp.status()`), or "".
---@return string
function M.statusline()
  if not require('quill.client').get() then
    return ''
  end
  return vim.lsp.status()
end

return M
