-- Release KEYS[1] if ARGV[1] still owns it, and wake waiters.
-- ARGV[1] owner id, ARGV[2] ms to keep a token tombstone, ARGV[3] channel.
-- Returns {1, clients notified} released, {0, 0} not ours (nothing touched).
--
-- The key is deleted when its token is below the server clock in µs: the
-- next acquisition's token (never below the clock) is then larger anyway.
-- Only a token at or ahead of the clock (acquisitions within one µs) is kept,
-- as a tombstone that expires after ARGV[2] ms.
local cur = redis.call('HMGET', KEYS[1], 'o', 't')
if cur[1] ~= ARGV[1] then
  return {0, 0}
end
local now = redis.call('TIME')
if tonumber(cur[2]) < tonumber(now[1]) * 1000000 + tonumber(now[2]) then
  redis.call('DEL', KEYS[1])
else
  redis.call('HDEL', KEYS[1], 'o', 'h', 'a')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, redis.call('PUBLISH', ARGV[3], '')}
