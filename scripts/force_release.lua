-- Remove whoever holds KEYS[1], for operators, and pass the lock to the
-- first live waiters (or free it). Returns {owner, token, holder, taken at}
-- of the removed holder (for a shared lock: of the holder with the newest
-- token), or false when nobody held the key.
local key = KEYS[1]
if not mayexpire(key) then
  return noexpire(key)
end
local cur = redis.call('HMGET', key, 'o', 't', 'h', 'a', 'k', 'nc')
if cur[5] == 's' or cur[5] == 'r' then
  return sforce(key, cur[2], cur[5])
end
if not cur[1] then
  return false
end
if not grant(key, cur[2], false, cur[5]) then
  if cur[6] then
    redis.call('PUBLISH', cur[6], '0')
  end
  free(key, cur[2])
end
return {cur[1], cur[2], cur[3], cur[4]}
