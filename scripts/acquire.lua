-- Take the lock KEYS[1] if nobody holds it.
-- ARGV[1] owner id, ARGV[2] TTL in ms, ARGV[3] holder description.
-- Returns {1, token} when taken, {0, remaining TTL in ms} when held.
--
-- The key is a hash: o = owner id, t = fencing token, h = holder, a = time
-- taken (server clock, microseconds). A released lock keeps only t for a
-- while (a tombstone), so the next token is above it even within the same
-- microsecond. Tokens are never below the server clock in microseconds, so
-- they keep increasing after the key expired or Redis restarted empty.
local cur = redis.call('HMGET', KEYS[1], 'o', 't')
if cur[1] then
  return {0, redis.call('PTTL', KEYS[1])}
end
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local token = now
if cur[2] then
  local last = tonumber(cur[2])
  if last and last >= token then
    token = last + 1
  end
end
redis.call('HSET', KEYS[1], 'o', ARGV[1], 't', string.format('%.0f', token),
  'h', ARGV[3], 'a', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, token}
