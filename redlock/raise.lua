-- Raise the fencing token of the lock KEYS[1] to at least ARGV[2], if the
-- owner id ARGV[1] holds it there. KEYS[2] is the key's token floor on this
-- master: a string that outlives the lock's hash when the token is ahead of
-- this server's clock.
--
-- The lock is renewlock's hash (o = owner id, t = last token issued, and
-- the hash's TTL is the lease). The token stored becomes
-- max(ARGV[2], t, floor + 1): never lower than any token this master has
-- recorded for the key. Returns {1, that token} or {0, 0} when ARGV[1] does
-- not hold the lock here (nothing is written then).
--
-- Why a floor: a token issued here later is max(t + 1, server clock in µs),
-- and t goes with the hash when the lease expires. A token raised above
-- what this clock will read when the lease can expire (another master's
-- clock ahead, or a token far in the future) would be forgotten then; the
-- floor keeps it, and only as long as the clock has not passed it.
local key, floor, id = KEYS[1], KEYS[2], ARGV[1]
local cur = redis.call('HMGET', key, 'o', 't')
if cur[1] ~= id then
  return {0, 0}
end
local stored = tonumber(cur[2]) or 0
local t = math.max(tonumber(ARGV[2]), stored)
local f = tonumber(redis.call('GET', floor))
if f and f >= t then
  t = f + 1
end
local function fmt(v)
  return string.format('%.0f', v)
end
if t ~= stored then
  redis.call('HSET', key, 't', fmt(t))
end
local now = redis.call('TIME')
local nowus = tonumber(now[1]) * 1000000 + tonumber(now[2])
local pttl = redis.call('PTTL', key)
-- The hash outlives the moment the clock passes t: nothing else to keep.
-- (Renewals only push the expiry later; a release keeps t as a tombstone
-- while it is ahead of the clock.)
if pttl > 0 and t < nowus + (pttl - 1) * 1000 then
  return {1, t}
end
redis.call('SET', floor, fmt(t), 'PX', fmt(math.floor((t - nowus) / 1000) + 1000))
return {1, t}
