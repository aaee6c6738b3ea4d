-- Extend the leases of ARGV[2i-1] (an owner id) on KEYS[i] to ARGV[2i] ms:
-- the lock, or its share of a shared lock, if it holds it; its queue entry
-- if it waits (a waiter of a shared lock also serves the queue, in case a
-- share ended by time has made room).
-- Returns two integers per key: {1, token} holds it (also when it was
-- granted and the grant's message was missed); {2, ms} waits, where ms is
-- how long until the lease in its way may end; {3, ms} the same, first in
-- the queue; {0, 0} neither (a lapsed lease is never re-created).
-- Out of memory, every lease is renewed too. Redis refuses a script's
-- first write if it may need memory (HSET: a share's end, a waiter's
-- place), but not the writes after it, so as never to stop a script half
-- done; renewal only rewrites what exists. So a write that changes
-- nothing goes first. (The allow-oom script flag would say it directly,
-- but a script with flags does not run on miniredis, which the CLI's demo
-- embeds.) Without it a batch whose first write was an HSET failed as a
-- whole out of memory: shared locks could not be renewed at all, and held
-- mutexes were lost because of the waiters renewed beside them.
if KEYS[1] and not mayexpire(KEYS[1]) then
  return noexpire(KEYS[1])
end
if KEYS[1] then
  redis.call('HDEL', KEYS[1], '\0')
end
local res = {}
for i, key in ipairs(KEYS) do
  local id, ttl = ARGV[2 * i - 1], ARGV[2 * i]
  local code, value = 0, 0
  local cur = redis.call('HMGET', key, 'o', 't')
  if cur[1] == id then -- the common case: a held mutex or leadership
    redis.call('PEXPIRE', key, ttl)
    code, value = 1, tonumber(cur[2])
  else
    ttl = tonumber(ttl)
    local more = redis.call('HMGET', key, 'k', 'x' .. id, 'e' .. id)
    cur[3], cur[4], cur[5] = more[1], more[2], more[3]
  end
  if code == 1 then
    -- renewed above
  elseif cur[4] then -- a share of a shared lock
    if tonumber(cur[4]) > NOW then
      redis.call('HSET', key, 'x' .. id, fmt(NOW + ttl))
      extend(key, NOW + ttl)
      code, value = 1, tonumber(string.match(redis.call('HGET', key, 'p' .. id), '^(%d+)'))
    end
  elseif cur[5] then -- a place in the queue
    redis.call('HSET', key, 'e' .. id, fmt(NOW + ttl))
    if cur[3] == 's' or cur[3] == 'r' then
      sgrant(key, false, {})
      local p = redis.call('HGET', key, 'p' .. id)
      if p then
        code, value = 1, tonumber(string.match(p, '^(%d+)'))
      else
        local _, _, first = prune(key)
        code, value = head(key) == id and 3 or 2, first and (first - NOW) or redis.call('PTTL', key)
      end
    elseif cur[1] then
      code, value = head(key) == id and 3 or 2, redis.call('PTTL', key)
    end
  end
  res[2 * i - 1], res[2 * i] = code, value
end
return res
