-- Take a share of the shared lock KEYS[1] for ARGV[1] (an owner id), or
-- join its queue: a permit of a semaphore (ARGV[6] = 's', limit ARGV[8]),
-- or a read-write lock's read share (ARGV[6] = 'r', ARGV[7] = 's') or write
-- share (ARGV[7] = 'x'). ARGV[2] TTL in ms, ARGV[3] holder text, ARGV[4] '0'
-- not to join the queue if there is no room, '1' to join it, '2' to join
-- it when an earlier attempt with this id may have joined; ARGV[5] the
-- caller's channel for grants.
--
-- Returns as acquire.lua: {1, token} taken; {0, ms until the first lease
-- in it may end} no room (not queued); {2, ms, 1 if first} queued. Nobody
-- takes a share while others wait, so the queue is served in order and a
-- waiting writer is not overtaken by later readers.
local key, id, ttl, kind, mode = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[6], ARGV[7]
local limit = tonumber(ARGV[8]) or 0
if not mayexpire(key) then
  return noexpire(key)
end
local cur = redis.call('HMGET', key, 'o', 'k', 'n', 't', 'qh', 'pc', 'wr', 'x' .. id)
if cur[1] then
  return wrongkind(key, cur[2], kind)
end
if cur[2] and cur[2] ~= kind then
  return wrongkind(key, cur[2], kind)
end
if kind == 's' and cur[3] and tonumber(cur[3]) ~= limit then
  return redis.error_reply('ERR renewlock: limit mismatch: ' .. key .. ' is a semaphore of limit ' .. cur[3])
end
if cur[8] and tonumber(cur[8]) > NOW then -- ours already: a retry
  redis.call('HSET', key, 'x' .. id, fmt(NOW + ttl))
  extend(key, NOW + ttl)
  return {1, tonumber(string.match(redis.call('HGET', key, 'p' .. id), '^(%d+)'))}
end
if not cur[2] then
  redis.call('HSET', key, 'k', kind)
  if kind == 's' then
    redis.call('HSET', key, 'n', limit)
  end
end
local queued = cur[5] and true or false
if queued then
  -- Others wait: serve them first if there is room now (a share whose
  -- lease ended is dropped), and take a share only if none is left.
  sgrant(key, false, {})
  queued = redis.call('HGET', key, 'qn')
end
local st = redis.call('HMGET', key, 'pc', 'wr')
local pc, wr, first = tonumber(st[1]) or 0, st[2], nil
local fits = not queued and sfits(mode, pc, wr, kind, limit)
if not fits then
  pc, wr, first = prune(key)
  fits = not queued and sfits(mode, pc, wr, kind, limit)
end
if fits then
  local token = nexttoken(redis.call('HGET', key, 't'))
  sadd(key, id, mode, token, ARGV[3], ttl)
  return {1, token}
end
local left = first and (first - NOW) or redis.call('PTTL', key)
if ARGV[4] == '0' then
  return {0, left}
end
if ARGV[4] == '2' and redis.call('HGET', key, 'e' .. id) then
  redis.call('HSET', key, 'e' .. id, fmt(NOW + ttl))
  return {2, left, head(key) == id and 1 or 0}
end
local isfirst = join(key, id, ttl, mode, ARGV[5], ARGV[3], '')
return {2, left, isfirst and 1 or 0}
