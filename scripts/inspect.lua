-- Read the lock KEYS[1] without changing it. Returns {owner, token, holder,
-- taken at, ms left of the lease, waiters}; the owner is false when nobody
-- holds it (the key is missing or only a token tombstone).
local cur = redis.call('HMGET', KEYS[1], 'o', 't', 'h', 'a', 'qn')
if not cur[1] then
  return {false, false, false, false, 0, 0}
end
return {cur[1], cur[2], cur[3], cur[4], redis.call('PTTL', KEYS[1]), tonumber(cur[5]) or 0}
