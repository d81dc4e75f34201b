-- Shared prelude of every Highway Gatekeeper script. ARGV[1] is the key prefix.
-- Keys: <p>peer:<id> (hash: info, nbrs, lease, lease_exp, last_ts, deadline, net, addrs,
-- lst, rin, rout), <p>deadline and <p>cand (sorted sets by deadline and candidate order),
-- <p>ids (lexicographic sorted set of ids, for paging), <p>tomb:<id> (last signed ts),
-- <p>nets (hash: network -> live registrations), <p>joins:<network> (hash: start and
-- n, the joins of the network's current window).
-- Per peer: net is the network it registered from, addrs the JSON of its addresses, lst
-- the newest accepted status timestamp, rin the recent reports against it and rout the
-- recent reports it sent ("<id>:<ms>,<id>:<ms>").
local p = ARGV[1]
local function rec_key(id) return p .. 'peer:' .. id end
local function tomb_key(id) return p .. 'tomb:' .. id end
local function num(s) return tonumber(s) or 0 end

-- Returns an error word when the request's proof of ownership does not hold.
local function check_auth(lease, lease_exp, last_ts, kind, val, now)
  if kind == 'sig' then
    if num(val) <= num(last_ts) then return 'replayed' end
  else
    if val ~= lease then return 'bad_lease' end
    if num(lease_exp) <= now then return 'lease_expired' end
  end
  return nil
end

-- Adds d to the live registrations of network net (none for an empty or missing net).
local function count_net(net, d)
  if not net or net == '' then return end
  local n = redis.call('HINCRBY', p .. 'nets', net, d)
  if n <= 0 then redis.call('HDEL', p .. 'nets', net) end
end

local function remove_peer(id)
  count_net(redis.call('HGET', rec_key(id), 'net'), -1)
  redis.call('DEL', rec_key(id))
  redis.call('ZREM', p .. 'deadline', id)
  redis.call('ZREM', p .. 'cand', id)
  redis.call('ZREM', p .. 'ids', id)
end

local function tombstone(id, last_ts, ttl_ms)
  redis.call('SET', tomb_key(id), last_ts, 'PX', ttl_ms)
end

-- "<id>:<ms>" pairs of list newer than since, without the id skip.
local function recent(list, since, skip)
  local kept = {}
  for id, at in string.gmatch(list or '', '(%x+):(%d+)') do
    if num(at) > since and id ~= skip then table.insert(kept, id .. ':' .. at) end
  end
  return kept
end
