--- Inline (ghost-text) completions.
---
--- On Neovim 0.12+ this turns on the built-in `vim.lsp.inline_completion` for buffers the Quill
--- client attaches to and maps the accept key to `vim.lsp.inline_completion.get()`, which
--- inserts the text and then runs the item's `quill.acceptCompletion` command (so the server
--- counts it). Older versions, or `inline = "virtual_text"`, use `quill.ghost`, a small renderer
--- of our own over the same request.

local M = {}

---@param opts quill.Options
---@return boolean
function M.builtin_available(opts)
  if opts.inline == 'virtual_text' then
    return false
  end
  return vim.lsp.inline_completion ~= nil and vim.lsp.inline_completion.get ~= nil
end

--- Map `lhs` in insert mode for `buf`: run `action()`, and type `lhs` itself when it did nothing.
local function map_or_fallback(buf, lhs, action, desc)
  if not lhs or lhs == '' then
    return
  end
  vim.keymap.set('i', lhs, function()
    if not action() then
      return vim.keycode(lhs)
    end
    return ''
  end, { buffer = buf, expr = true, replace_keycodes = false, desc = desc })
end

---@param opts quill.Options
---@param buf integer
---@param client vim.lsp.Client
local function attach_builtin(opts, buf, client)
  vim.lsp.inline_completion.enable(true, { bufnr = buf, client_id = client.id })
  local keys = opts.keys
  map_or_fallback(buf, keys.accept, function()
    return vim.lsp.inline_completion.get({ bufnr = buf })
  end, 'Quill: accept the inline completion')
  map_or_fallback(buf, keys.next, function()
    vim.lsp.inline_completion.select({ bufnr = buf, count = 1 })
    return true
  end, 'Quill: next inline completion')
  map_or_fallback(buf, keys.prev, function()
    vim.lsp.inline_completion.select({ bufnr = buf, count = -1 })
    return true
  end, 'Quill: previous inline completion')
end

---@param opts quill.Options
---@param buf integer
---@param client vim.lsp.Client
local function attach_fallback(opts, buf, client)
  local ghost = require('quill.ghost')
  ghost.attach(buf, client, opts)
  map_or_fallback(buf, opts.keys.accept, function()
    return ghost.accept(buf)
  end, 'Quill: accept the inline completion')
  map_or_fallback(buf, opts.keys.dismiss, function()
    return ghost.dismiss(buf)
  end, 'Quill: dismiss the inline completion')
end

--- Turn inline completion on in each buffer the Quill client attaches to.
---@param opts quill.Options
function M.setup(opts)
  if opts.inline == false then
    return
  end
  local group = vim.api.nvim_create_augroup('quill.inline', { clear = true })
  vim.api.nvim_create_autocmd('LspAttach', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if not client or client.name ~= 'quill' then
        return
      end
      if M.builtin_available(opts) then
        attach_builtin(opts, args.buf, client)
      else
        attach_fallback(opts, args.buf, client)
      end
    end,
  })
end

return M
