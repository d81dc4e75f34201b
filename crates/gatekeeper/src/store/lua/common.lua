-- Shared prelude of every Highway Gatekeeper script. ARGV[1] is the key prefix.
-- Keys: <p>peer:<id> (hash: info, nbrs, lease, lease_exp, last_ts, deadline),
-- <p>deadline and <p>cand (sorted sets by deadline and candidate order),
-- <p>ids (lexicographic sorted set of ids, for paging), <p>tomb:<id> (last signed ts).
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

local function remove_peer(id)
  redis.call('DEL', rec_key(id))
  redis.call('ZREM', p .. 'deadline', id)
  redis.call('ZREM', p .. 'cand', id)
  redis.call('ZREM', p .. 'ids', id)
end

local function tombstone(id, last_ts, ttl_ms)
  redis.call('SET', tomb_key(id), last_ts, 'PX', ttl_ms)
end
