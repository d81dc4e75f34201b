-- ARGV: prefix, reporter, kind, val, now, target, suspect_deadline, quorum, window_ms,
--       interval_ms, max_per_interval, max_reporters
-- Returns {word, reporters}.
local now = num(ARGV[5])
local target = ARGV[6]
local rk = rec_key(ARGV[2])
local f = redis.call('HMGET', rk, 'lease', 'lease_exp', 'last_ts', 'nbrs', 'deadline', 'rout')
if not f[3] then return {'unknown_peer', 0} end
if num(f[5]) <= now then return {'expired', 0} end
local bad = check_auth(f[1], f[2], f[3], ARGV[3], ARGV[4], now)
if bad then return {bad, 0} end
if ARGV[3] == 'sig' then redis.call('HSET', rk, 'last_ts', ARGV[4]) end
-- The reporter's rate limit: one report per target and max_per_interval in all.
local sent = recent(f[6], now - num(ARGV[10]), nil)
local limited = #sent >= num(ARGV[11])
for _, entry in ipairs(sent) do
  if string.sub(entry, 1, #target + 1) == target .. ':' then limited = true end
end
if not limited then table.insert(sent, target .. ':' .. ARGV[5]) end
redis.call('HSET', rk, 'rout', table.concat(sent, ','))
if limited then return {'rate_limited', 0} end
local tk = rec_key(target)
local t = redis.call('HMGET', tk, 'deadline', 'nbrs', 'rin')
if not t[1] or num(t[1]) <= now then return {'gone', 0} end
local function lists(nbrs, id) return nbrs and string.find(nbrs, id, 1, true) ~= nil end
if not lists(f[4], target) or not lists(t[2], ARGV[2]) then return {'not_a_neighbour', 0} end
local rin = recent(t[3], now - num(ARGV[9]), ARGV[2])
table.insert(rin, ARGV[2] .. ':' .. ARGV[5])
while #rin > num(ARGV[12]) do table.remove(rin, 1) end
redis.call('HSET', tk, 'rin', table.concat(rin, ','))
if #rin >= num(ARGV[8]) then
  local d = t[1]
  if num(ARGV[7]) < num(d) then d = ARGV[7] end
  redis.call('HSET', tk, 'deadline', d)
  redis.call('ZADD', p .. 'deadline', d, target)
  redis.call('ZREM', p .. 'cand', target)
  return {'suspected', #rin}
end
if not redis.call('ZSCORE', p .. 'cand', target) then return {'suspected', #rin} end
return {'recorded', #rin}
