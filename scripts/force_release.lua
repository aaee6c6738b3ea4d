-- Remove whoever holds KEYS[1], for operators, and pass the lock to the
-- first live waiter (or free it). Returns {owner, token, holder, taken at}
-- of the removed holder, or false when nobody held the key.
local key = KEYS[1]
if not mayexpire(key) then
  return noexpire(key)
end
local cur = redis.call('HMGET', key, 'o', 't', 'h', 'a')
if not cur[1] then
  return false
end
if not grant(key, cur[2], false) then
  free(key, cur[2])
end
return cur
