-- Remove whoever holds KEYS[1], for operators, and wake waiters.
-- ARGV[1] ms to keep a token tombstone, ARGV[2] channel.
-- Returns {owner, token, holder, acquired-at} of the removed holder, or
-- false when nobody held the key. Like release.lua, it keeps the token only
-- if it is at or ahead of the server clock.
local cur = redis.call('HMGET', KEYS[1], 'o', 't', 'h', 'a')
if not cur[1] then
  return false
end
local now = redis.call('TIME')
if tonumber(cur[2]) < tonumber(now[1]) * 1000000 + tonumber(now[2]) then
  redis.call('DEL', KEYS[1])
else
  redis.call('HDEL', KEYS[1], 'o', 'h', 'a')
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', ARGV[2], '')
return cur
