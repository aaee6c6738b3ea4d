-- Extend the leases of ARGV[2i-1] (an owner id) on KEYS[i] to ARGV[2i] ms:
-- the lock if it holds it, its queue entry if it waits.
-- Returns two integers per key: {1, token} holds the lock (also when it was
-- granted and the grant's message was missed); {2, ms left of the holder's
-- lease} waits; {3, ms left} waits, first in the queue; {0, 0} neither (a
-- lapsed lease is never re-created). Renewing a held lock uses PEXPIRE
-- alone, which Redis allows even when it is out of memory.
if KEYS[1] and not mayexpire(KEYS[1]) then
  return noexpire(KEYS[1])
end
local res = {}
for i, key in ipairs(KEYS) do
  local id, ttl = ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  local cur = redis.call('HMGET', key, 'o', 't')
  if cur[1] == id then
    redis.call('PEXPIRE', key, ttl)
    res[2 * i - 1], res[2 * i] = 1, tonumber(cur[2])
  elseif cur[1] and redis.call('HEXISTS', key, 'e' .. id) == 1 then
    redis.call('HSET', key, 'e' .. id, fmt(NOW + ttl))
    res[2 * i - 1], res[2 * i] = head(key) == id and 3 or 2, redis.call('PTTL', key)
  else
    res[2 * i - 1], res[2 * i] = 0, 0
  end
end
return res
