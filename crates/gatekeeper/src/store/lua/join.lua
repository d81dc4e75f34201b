-- ARGV: prefix, id, info, signed_ts, lease_hash, lease_exp, deadline, cand_score, net,
--       addrs, now, max_live ('' = no network limits), max_joins, join_window_ms
local id = ARGV[2]
local rk = rec_key(id)
local net = ARGV[9]
local old = redis.call('HMGET', rk, 'last_ts', 'net', 'lst')
local last = old[1]
if not last then last = redis.call('GET', tomb_key(id)) end
if last and num(ARGV[4]) <= num(last) then return 'replayed' end
if ARGV[12] ~= '' and net ~= '' then
  -- The window is judged by the request's clock, like every deadline here; the key's
  -- own expiry only collects windows nobody uses any more.
  local jk = p .. 'joins:' .. net
  local now = num(ARGV[11])
  local w = redis.call('HMGET', jk, 'start', 'n')
  if w[1] and now - num(w[1]) < num(ARGV[14]) then
    if num(w[2]) >= num(ARGV[13]) then return 'join_rate' end
    redis.call('HINCRBY', jk, 'n', 1)
  else
    redis.call('HSET', jk, 'start', ARGV[11], 'n', 1)
    redis.call('PEXPIRE', jk, 2 * num(ARGV[14]))
  end
  local rejoin = old[1] and old[2] == net
  if not rejoin and num(redis.call('HGET', p .. 'nets', net)) >= num(ARGV[12]) then
    return 'too_many_peers'
  end
end
if not old[1] then
  count_net(net, 1)
elseif old[2] ~= net then
  count_net(old[2], -1)
  count_net(net, 1)
end
-- A re-join keeps rout (the rate limit) and never lowers lst; reports against it are void.
local lst = ARGV[4]
if old[3] and num(old[3]) > num(lst) then lst = old[3] end
redis.call('HSET', rk, 'info', ARGV[3], 'nbrs', '', 'lease', ARGV[5], 'lease_exp', ARGV[6],
  'last_ts', ARGV[4], 'deadline', ARGV[7], 'net', net, 'addrs', ARGV[10], 'lst', lst,
  'rin', '')
redis.call('ZADD', p .. 'deadline', ARGV[7], id)
-- An empty score: the peer cannot be dialled, so it is never offered as a candidate.
if ARGV[8] ~= '' then redis.call('ZADD', p .. 'cand', ARGV[8], id) else redis.call('ZREM', p .. 'cand', id) end
redis.call('ZADD', p .. 'ids', 0, id)
redis.call('DEL', tomb_key(id))
return 'ok'
