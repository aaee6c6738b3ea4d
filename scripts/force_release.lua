-- Remove whoever holds KEYS[1], for operators. Keeps the token tombstone.
-- ARGV[1] ms to keep the tombstone, ARGV[2] channel.
-- Returns {owner, token, holder, acquired-at} of the removed holder, or
-- false when nobody held the key.
local cur = redis.call('HMGET', KEYS[1], 'o', 't', 'h', 'a')
if not cur[1] then
  return false
end
redis.call('HDEL', KEYS[1], 'o', 'h', 'a')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], '')
return cur
