-- Release ARGV[1]'s share of the shared lock KEYS[1] (a semaphore's permit,
-- a read-write lock's read or write share), or take ARGV[1] out of its
-- queue, and serve the queue with the room that frees. ARGV[2] is the
-- caller's channel for grants. Returns as release.lua, except that several
-- of the caller's own waiters may be named: {code, handed, token, id,
-- token, id, …}; code 0 also when the share's lease had ended (lost).
local key, id = KEYS[1], ARGV[1]
if not mayexpire(key) then
  return noexpire(key)
end
local k = redis.call('HGET', key, 'k')
if k ~= 's' and k ~= 'r' then
  return {0, 0}
end
local code = 0
local x = tonumber(redis.call('HGET', key, 'x' .. id))
if x then
  code = x > NOW and 1 or 0 -- a lease that had ended was not ours any more
  sremove(key, id)
else
  local rec = redis.call('HGET', key, 'w' .. id)
  if not rec then
    return {0, 0}
  end
  drop(key, id, (parse(rec)))
  code = 3
end
local out = {code, 0}
if sgrant(key, ARGV[2], out) > 0 then
  out[2] = 1
end
sfree(key)
return out
