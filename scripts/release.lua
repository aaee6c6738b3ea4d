-- Release KEYS[1] if ARGV[1] still owns it, and wake waiters.
-- ARGV[1] owner id, ARGV[2] ms to keep the token tombstone, ARGV[3] channel.
-- Returns 1 released, 0 not ours (nothing is touched).
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then
  return 0
end
redis.call('HDEL', KEYS[1], 'o', 'h', 'a')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], '')
return 1
