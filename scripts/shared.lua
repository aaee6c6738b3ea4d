-- shared.lua follows lib.lua in the scripts that deal with shared locks:
-- semaphores (k = 's', up to n holders) and read-write locks (k = 'r', any
-- number of readers or one writer). Each holder has its own lease, kept in
-- fields; the key's TTL is never shorter than the longest of them.
--   n      the semaphore's limit        pc  number of holders
--   pl     the holders' ids, space-separated
--   wr     the writer's id, while a writer holds a read-write lock
--   x<id>  end of that holder's lease (server ms)
--   p<id>  "<token> <mode> <taken at µs> <holder text>"
-- A holder whose lease has ended is dropped (prune) when the room it takes
-- is needed: by server time, so a crashed holder frees its share.

-- sholders returns the holders' ids.
local function sholders(key)
  local out = {}
  local pl = redis.call('HGET', key, 'pl')
  if pl then
    for id in string.gmatch(pl, '%S+') do
      out[#out + 1] = id
    end
  end
  return out
end

-- sremove takes holder id out of key's holder fields.
local function sremove(key, id)
  redis.call('HDEL', key, 'x' .. id, 'p' .. id)
  local keep = {}
  for _, h in ipairs(sholders(key)) do
    if h ~= id then
      keep[#keep + 1] = h
    end
  end
  if #keep > 0 then
    redis.call('HSET', key, 'pl', table.concat(keep, ' '), 'pc', #keep)
  else
    redis.call('HDEL', key, 'pl', 'pc')
  end
  if redis.call('HGET', key, 'wr') == id then
    redis.call('HDEL', key, 'wr')
  end
end

-- prune drops the holders whose lease has ended. Returns the number of
-- holders left, the writer's id, and the earliest end of their leases.
local function prune(key)
  local keep, first = {}, nil
  local wr = redis.call('HGET', key, 'wr')
  local dropped = false
  for _, id in ipairs(sholders(key)) do
    local x = tonumber(redis.call('HGET', key, 'x' .. id))
    if x and x > NOW then
      keep[#keep + 1] = id
      if not first or x < first then
        first = x
      end
    else
      redis.call('HDEL', key, 'x' .. id, 'p' .. id)
      if wr == id then
        redis.call('HDEL', key, 'wr')
        wr = nil
      end
      dropped = true
    end
  end
  if dropped then
    if #keep > 0 then
      redis.call('HSET', key, 'pl', table.concat(keep, ' '), 'pc', #keep)
    else
      redis.call('HDEL', key, 'pl', 'pc')
    end
  end
  return #keep, wr, first
end

-- sfits reports whether a holder of mode ('s' shared, 'x' exclusive) fits
-- next to pc holders and writer wr, for kind k with limit n.
local function sfits(mode, pc, wr, k, n)
  if mode == 'x' then
    return pc == 0
  end
  return not wr and (k ~= 's' or pc < n)
end

-- sadd makes id a holder of key in mode with token and a lease of ttl ms.
local function sadd(key, id, mode, token, holder, ttl)
  redis.call('HSET', key, 'x' .. id, fmt(NOW + ttl), 't', fmt(token),
    'p' .. id, fmt(token) .. ' ' .. mode .. ' ' .. fmt(NOWUS) .. ' ' .. holder)
  local pl = redis.call('HGET', key, 'pl')
  redis.call('HSET', key, 'pl', pl and (pl .. ' ' .. id) or id)
  redis.call('HINCRBY', key, 'pc', 1)
  if mode == 'x' then
    redis.call('HSET', key, 'wr', id)
  end
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end

-- sgrant serves key's queue in order while the first waiter fits: each
-- gets a new token and its lease, and its client is told on its channel,
-- unless the channel is mine (then its token and id are appended to out).
-- A waiter that does not fit stops the queue (so a waiting writer is not
-- overtaken by later readers). Returns the number granted.
local function sgrant(key, mine, out)
  local st = redis.call('HMGET', key, 'k', 'n', 't', 'pc', 'wr')
  local k, n, t, pc, wr = st[1], tonumber(st[2]), st[3], tonumber(st[4]) or 0, st[5]
  local pruned, granted = false, 0
  while true do
    local id, pos, rec, e = head(key)
    if not id then
      break
    end
    local _, _, mode, chan, holder = parse(rec)
    local ttl = e - NOW -- the lease ends where the waiter's place would have (see grant)
    local fits = sfits(mode, pc, wr, k, n)
    if not fits and not pruned then
      pc, wr = prune(key)
      pruned = true
      fits = sfits(mode, pc, wr, k, n)
    end
    if not fits then
      break
    end
    drop(key, id, pos)
    local token = nexttoken(t)
    t = token
    sadd(key, id, mode, token, holder, ttl)
    pc = pc + 1
    if mode == 'x' then
      wr = id
    end
    granted = granted + 1
    if chan == mine then
      out[#out + 1] = token
      out[#out + 1] = id
    else
      notify(chan, id .. ' ' .. fmt(token))
    end
  end
  return granted
end

-- sfree frees key when it has no holder and nobody waits.
local function sfree(key)
  local st = redis.call('HMGET', key, 'pc', 'qn', 't')
  if not st[1] and not st[2] then
    free(key, st[3])
  end
end

-- sforce removes every holder of key (operators), serves the queue, and
-- returns the newest holder's {owner, token, holder text, taken at}, or
-- false if none held it.
local function sforce(key, t, k)
  local best
  for _, id in ipairs(sholders(key)) do
    local p = redis.call('HGET', key, 'p' .. id)
    local x = tonumber(redis.call('HGET', key, 'x' .. id))
    if p and x and x > NOW then
      local tok, _, at, holder = string.match(p, '^(%d+) (%a) (%d+) (.*)$')
      if not best or tonumber(tok) > tonumber(best[2]) then
        best = {id, tok, holder, at}
      end
    end
    sremove(key, id)
  end
  sgrant(key, false, {})
  sfree(key)
  return best or false
end
