-- Read-only. ARGV: prefix, requester, want, now, scan_start, max_scan
-- Scans the lowest bucket from a random start, wraps, then the later buckets.
local out = {}
local first = redis.call('ZRANGE', p .. 'cand', 0, 0, 'WITHSCORES')
if #first == 0 then return out end
local bucket = 4294967296
local function f(x) return string.format('%.0f', x) end
local base = math.floor(num(first[2]) / bucket) * bucket
local start = base + num(ARGV[5])
local ranges = {
  {f(start), '(' .. f(base + bucket)},
  {f(base), '(' .. f(start)},
  {f(base + bucket), '+inf'},
}
local want = num(ARGV[3])
local now = num(ARGV[4])
local budget = num(ARGV[6])
-- Fetch in small batches: the scan rarely needs more than `want` members, and pulling a
-- whole budget's worth per range costs Redis far more than the few it uses.
for _, r in ipairs(ranges) do
  local offset = 0
  while #out < want and budget > 0 do
    local batch = math.min(budget, want - #out + 16)
    local ids = redis.call('ZRANGEBYSCORE', p .. 'cand', r[1], r[2], 'LIMIT', offset, batch)
    offset = offset + #ids
    for _, id in ipairs(ids) do
      if #out >= want or budget <= 0 then break end
      budget = budget - 1
      if id ~= ARGV[2] then
        local fields = redis.call('HMGET', rec_key(id), 'info', 'deadline')
        if fields[1] and num(fields[2]) > now then table.insert(out, fields[1]) end
      end
    end
    if #ids < batch then break end
  end
end
return out
