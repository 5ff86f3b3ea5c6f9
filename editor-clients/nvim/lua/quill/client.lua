--- The one Quill LSP client: its config, finding or starting it, and requests that stream.
---
--- `quill/chat` streams `{delta}` values through `$/progress` on the request's
--- `partialResultToken`. Neovim's default `$/progress` handler only knows work-done progress, so
--- the client gets its own handler that routes partial-result tokens to their request and passes
--- everything else (model download/convert/load) on to the default, which feeds `LspProgress`
--- and `vim.lsp.status()`.

local M = {}

M.name = 'quill'

--- partialResultToken -> function(value) for requests in flight
local partial_handlers = {}
--- callbacks waiting for a client that is starting
local waiting = {}
local next_token = 0

local function progress_handler(err, params, ctx, config)
  local on_partial = params and partial_handlers[params.token]
  if on_partial then
    on_partial(params.value)
    return
  end
  return vim.lsp.handlers['$/progress'](err, params, ctx, config)
end

local function on_init(client)
  local callbacks = waiting
  waiting = {}
  for _, callback in ipairs(callbacks) do
    callback(client)
  end
end

local function on_exit()
  -- A client that died never calls back; forget who was waiting so a later call starts afresh.
  waiting = {}
end

--- A copy of the settings tree where every empty table is a JSON object: `vim.json` encodes
--- `{}` as `[]`, which the server would reject as a settings section.
---@param tree table
---@return table
function M.as_object(tree)
  if next(tree) == nil then
    return vim.empty_dict()
  end
  local copy = {}
  for key, value in pairs(tree) do
    copy[key] = type(value) == 'table' and M.as_object(value) or value
  end
  return copy
end

--- The `vim.lsp.Config` for Quill, from the plugin's options.
---@param opts quill.Options
function M.lsp_config(opts)
  local settings = M.as_object(opts.settings or {})
  return {
    name = M.name,
    cmd = opts.cmd,
    -- Always a folder (the cwd when no marker is found): chat history is kept per folder, and
    -- :QuillHistory right after start must find the same one.
    -- Unnamed buffers get no client (on_dir is not called): they have no URI to complete in.
    root_dir = function(bufnr, on_dir)
      if vim.api.nvim_buf_get_name(bufnr) ~= '' then
        on_dir(M.root_dir(opts, bufnr))
      end
    end,
    filetypes = opts.filetypes,
    -- The server reads its settings from initializationOptions first and answers
    -- `workspace/configuration` for section "quill" from `settings.quill`.
    init_options = settings,
    settings = { quill = settings },
    handlers = { ['$/progress'] = progress_handler },
    on_init = on_init,
    on_exit = on_exit,
  }
end

--- The workspace folder for `bufnr`: the nearest folder with a root marker, else the cwd.
---@param opts quill.Options
---@param bufnr integer
---@return string
function M.root_dir(opts, bufnr)
  local name = vim.api.nvim_buf_get_name(bufnr)
  local found = name ~= '' and vim.fs.root(bufnr, opts.root_markers) or nil
  return found or vim.fs.root(vim.fn.getcwd(), opts.root_markers) or vim.fn.getcwd()
end

--- The running Quill client, if any.
---@return vim.lsp.Client?
function M.get()
  return vim.lsp.get_clients({ name = M.name })[1]
end

--- Call `fn(client)` with an initialized Quill client, starting one (not attached to any
--- buffer) when none runs, e.g. for `:QuillHistory` right after Neovim starts.
---@param opts quill.Options
---@param fn fun(client: vim.lsp.Client)
function M.with_client(opts, fn)
  local client = vim.lsp.get_clients({ name = M.name, _uninitialized = true })[1]
  if client and client.initialized then
    fn(client)
    return
  end
  table.insert(waiting, fn)
  if client then
    return
  end
  local config = M.lsp_config(opts)
  config.root_dir = M.root_dir(opts, 0)
  if not vim.lsp.start(config, { attach = false }) then
    waiting = {}
    vim.notify('Quill: could not start ' .. table.concat(opts.cmd, ' '), vim.log.levels.ERROR)
  end
end

--- The workspace folder URI the server keys history by.
---@param client vim.lsp.Client
---@return string?
function M.workspace_folder(client)
  local folders = client.workspace_folders
  return folders and folders[1] and folders[1].uri or nil
end

--- Send `method` with a fresh partialResultToken; `on_partial(value)` sees each streamed
--- value, `on_done(err, result)` the final response.
---@param client vim.lsp.Client
---@param method string
---@param params table
---@param on_partial fun(value: any)
---@param on_done fun(err: lsp.ResponseError?, result: any)
---@param bufnr integer?
function M.request_streaming(client, method, params, on_partial, on_done, bufnr)
  next_token = next_token + 1
  local token = ('quill-partial-%d-%d'):format(vim.uv.os_getpid(), next_token)
  params.partialResultToken = token
  partial_handlers[token] = on_partial
  local ok = client:request(method, params, function(err, result)
    partial_handlers[token] = nil
    on_done(err, result)
  end, bufnr)
  if not ok then
    partial_handlers[token] = nil
    on_done({ code = -32803, message = 'Quill: the server is not running' }, nil)
  end
end

return M
