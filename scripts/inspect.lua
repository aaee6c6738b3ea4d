-- Read the lock KEYS[1] without changing it. Returns {owner, token, holder,
-- taken at, ms left of the lease, waiters, kind, value, limit, then per
-- holder of a shared lock: owner, token, mode, taken at, holder, ms left}.
-- The owner is false when no exclusive holder has it (for a shared lock,
-- see the holders); a holder whose lease has ended is left out.
local key = KEYS[1]
local cur = redis.call('HMGET', key, 'o', 't', 'h', 'a', 'qn', 'k', 'v', 'n', 'pl')
local out = {cur[1], cur[2], cur[3], cur[4], 0, tonumber(cur[5]) or 0, cur[6] or '', cur[7] or '', tonumber(cur[8]) or 0}
if cur[1] then
  out[5] = redis.call('PTTL', key)
end
if cur[9] then
  for id in string.gmatch(cur[9], '%S+') do
    local x = tonumber(redis.call('HGET', key, 'x' .. id))
    local p = redis.call('HGET', key, 'p' .. id)
    if x and p and x > NOW then
      local tok, mode, at, holder = string.match(p, '^(%d+) (%a) (%d+) (.*)$')
      for _, v in ipairs({id, tok, mode, at, holder, x - NOW}) do
        out[#out + 1] = v
      end
    end
  end
end
return out
