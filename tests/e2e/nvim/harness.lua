--- A small harness for driving headless Neovim like a user: the scenario runs in a coroutine,
--- keys go through the typeahead (`nvim_feedkeys`) so Neovim's own main loop handles them (insert
--- mode, mappings, autocommands), and `wait_for` hands control back to that loop until a
--- condition holds. The outcome goes to a JSON file named by $QUILL_E2E_RESULT, then Neovim quits.
---
--- Why not `vim.wait`: it runs the event loop but not the typeahead, so keys typed before it
--- would never reach insert mode while it waits for the server's answer.

local H = {}

H.result = { steps = {}, messages = {} }

local co
local finished = false

local function write_result()
  local path = assert(os.getenv('QUILL_E2E_RESULT'), '$QUILL_E2E_RESULT is not set')
  H.result.messages = vim.split(vim.fn.execute('messages'), '\n', { trimempty = true })
  local file = assert(io.open(path, 'w'))
  file:write(vim.json.encode(H.result))
  file:close()
end

--- Record the outcome and quit Neovim (which shuts the language server down).
function H.finish(ok, err)
  if finished then
    return
  end
  finished = true
  H.result.ok = ok
  H.result.error = err
  local wrote, write_err = pcall(write_result)
  if not wrote then
    io.stderr:write('could not write the result: ' .. tostring(write_err) .. '\n')
  end
  vim.cmd('qa!')
end

local function resume(...)
  local ok, err = coroutine.resume(co, ...)
  if not ok then
    H.finish(false, debug.traceback(co, tostring(err)))
  elseif coroutine.status(co) == 'dead' then
    H.finish(true, nil)
  end
end

--- Yield until `cond()` returns a truthy value (which is returned), checking after each turn of
--- the main loop; raise once `timeout_ms` has passed.
---@param what string what is awaited, for the error message
---@param cond fun(): any
---@param timeout_ms? integer
function H.wait_for(what, cond, timeout_ms)
  timeout_ms = timeout_ms or 120000
  local deadline = vim.uv.now() + timeout_ms
  local timer = assert(vim.uv.new_timer())
  local done = false
  timer:start(0, 10, vim.schedule_wrap(function()
    if done or finished then
      return
    end
    local ok, value = pcall(cond)
    local err = (not ok and ('the check raised ' .. tostring(value)))
      or (not value and vim.uv.now() > deadline and 'timed out')
      or nil
    if (ok and value) or err then
      done = true
      timer:stop()
      timer:close()
      resume(ok and value or nil, err)
    end
  end))
  local value, err = coroutine.yield()
  if err then
    error(('waiting for %s: %s (limit %d ms)'):format(what, err, timeout_ms), 2)
  end
  table.insert(H.result.steps, what)
  return value
end

--- Type `keys` (with <> notation) as a user would; mappings apply.
function H.type(keys)
  vim.api.nvim_feedkeys(vim.keycode(keys), 'mt', false)
end

--- Run `scenario()` as a coroutine once Neovim's main loop is up; a watchdog ends a hung run.
function H.run(scenario, watchdog_ms)
  co = coroutine.create(scenario)
  vim.defer_fn(function()
    H.finish(false, ('the scenario did not finish within %d ms; steps done: %s'):format(
      watchdog_ms, table.concat(H.result.steps, ', ')))
  end, watchdog_ms)
  vim.schedule(resume)
end

return H
