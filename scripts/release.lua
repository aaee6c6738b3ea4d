-- Release KEYS[1] if ARGV[1] still owns it, and wake waiters.
-- ARGV[1] owner id, ARGV[2] ms to keep the token tombstone, ARGV[3] channel.
-- Returns {1, clients notified} released, {0, 0} not ours (nothing touched).
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then
  return {0, 0}
end
redis.call('HDEL', KEYS[1], 'o', 'h', 'a')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, redis.call('PUBLISH', ARGV[3], '')}
