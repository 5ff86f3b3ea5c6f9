--- :QuillStatus and the model's progress in the message area.
---
--- The server reports download/convert/load as LSP work-done progress; Neovim records it for
--- `vim.lsp.status()` and fires `LspProgress`, which is echoed here for the Quill client so the
--- first start (minutes for a large model) is not silent.

local client_mod = require('quill.client')

local M = {}

--- One line describing `quill/status`, e.g. "ready · smollm2 · cpu float32 · 3/10 accepted".
---@param status table
---@return string
function M.format(status)
  -- JSON null arrives as vim.NIL, which is truthy: drop it first.
  status = vim.tbl_map(function(v)
    return v ~= vim.NIL and v or nil
  end, status)
  local parts = { status.state or '?' }
  if status.model then
    table.insert(parts, status.model)
  end
  if status.device then
    table.insert(parts, ('%s %s'):format(status.device, status.dtype or ''))
  end
  local p = type(status.progress) == 'table' and status.progress
  if p and p.total and p.total > 0 then
    table.insert(parts, ('%s %d%%'):format(p.phase or '', math.floor(100 * p.done / p.total)))
  end
  local a = type(status.acceptance) == 'table' and status.acceptance
  if a and a.shown then
    table.insert(parts, ('%d/%d suggestions accepted'):format(a.accepted or 0, a.shown))
  end
  if type(status.error) == 'string' then
    table.insert(parts, 'error: ' .. status.error)
  end
  return 'Quill: ' .. table.concat(parts, ' · ')
end

--- Ask the server for its status; `on_result(status)` gets the raw table (default: echo it).
---@param opts quill.Options
---@param on_result? fun(status: table)
function M.show(opts, on_result)
  client_mod.with_client(opts, function(client)
    client:request('quill/status', {}, function(err, result)
      if err then
        vim.notify('Quill status: ' .. err.message, vim.log.levels.ERROR)
        return
      end
      M.last = result
      if on_result then
        on_result(result)
      else
        vim.api.nvim_echo({ { M.format(result) } }, true, {})
      end
    end)
  end)
end

---@param opts quill.Options
function M.setup(opts)
  local group = vim.api.nvim_create_augroup('quill.progress', { clear = true })
  if not opts.progress then
    return
  end
  vim.api.nvim_create_autocmd('LspProgress', {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      local value = args.data.params.value
      if not client or client.name ~= client_mod.name or type(value) ~= 'table' then
        return
      end
      local title = value.title or ''
      if not vim.startswith(title, 'Quill') then
        title = 'Quill: ' .. title
      end
      local text = ('%s %s%s'):format(
        title,
        value.message or '',
        value.percentage and (' (%d%%)'):format(value.percentage) or ''
      )
      if value.kind == 'end' then
        text = title .. ' ' .. (value.message or 'done')
      end
      vim.api.nvim_echo({ { text } }, false, {})
    end,
  })
end

return M
