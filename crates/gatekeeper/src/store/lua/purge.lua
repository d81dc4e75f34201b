-- ARGV: prefix, now, limit, tomb_ttl_ms
local ids = redis.call('ZRANGEBYSCORE', p .. 'deadline', '-inf', ARGV[2], 'LIMIT', 0, num(ARGV[3]))
for _, id in ipairs(ids) do
  local last = redis.call('HGET', rec_key(id), 'last_ts') or '0'
  remove_peer(id)
  tombstone(id, last, ARGV[4])
end
return #ids
