-- Read-only. ARGV: prefix, requester, want, now, scan_start, max_scan, random_scan, then
-- the random points (64 hex characters each).
-- One candidate per random point: the first live, unsuspected peer at or after it in id
-- order (wrapping), at most random_scan looked at. Then the least loaded: the lowest
-- bucket from a random start, wrapped, then the later buckets. Random and least loaded
-- alternate in the answer, random first (the embedded store's `pick` does the same).
local want = num(ARGV[3])
local now = num(ARGV[4])
local chosen = {[ARGV[2]] = true}

-- The peer's info when it may be offered: not chosen yet, live, not suspected.
local function offer(id, check_suspected)
  if chosen[id] then return nil end
  if check_suspected and not redis.call('ZSCORE', p .. 'cand', id) then return nil end
  local fields = redis.call('HMGET', rec_key(id), 'info', 'deadline')
  if fields[1] and num(fields[2]) > now then
    chosen[id] = true
    return fields[1]
  end
  return nil
end

local random = {}
local random_scan = num(ARGV[7])
for i = 8, #ARGV do
  if #random >= want then break end
  local point = ARGV[i]
  local ids = redis.call('ZRANGEBYLEX', p .. 'ids', '[' .. point, '+', 'LIMIT', 0, random_scan)
  if #ids < random_scan then
    local wrapped = redis.call('ZRANGEBYLEX', p .. 'ids', '-', '(' .. point, 'LIMIT', 0,
      random_scan - #ids)
    for _, id in ipairs(wrapped) do table.insert(ids, id) end
  end
  for _, id in ipairs(ids) do
    local info = offer(id, true)
    if info then
      table.insert(random, info)
      break
    end
  end
end

local least = {}
local want_least = want - #random
local first = redis.call('ZRANGE', p .. 'cand', 0, 0, 'WITHSCORES')
if #first > 0 and want_least > 0 then
  local bucket = 4294967296
  local function f(x) return string.format('%.0f', x) end
  local base = math.floor(num(first[2]) / bucket) * bucket
  local start = base + num(ARGV[5])
  local ranges = {
    {f(start), '(' .. f(base + bucket)},
    {f(base), '(' .. f(start)},
    {f(base + bucket), '+inf'},
  }
  local budget = num(ARGV[6])
  -- Fetch in small batches: the scan rarely needs more than `want` members, and pulling
  -- a whole budget's worth per range costs Redis far more than the few it uses.
  for _, r in ipairs(ranges) do
    local offset = 0
    while #least < want_least and budget > 0 do
      local batch = math.min(budget, want_least - #least + 16)
      local ids = redis.call('ZRANGEBYSCORE', p .. 'cand', r[1], r[2], 'LIMIT', offset, batch)
      offset = offset + #ids
      for _, id in ipairs(ids) do
        if #least >= want_least or budget <= 0 then break end
        budget = budget - 1
        local info = offer(id, false)
        if info then table.insert(least, info) end
      end
      if #ids < batch then break end
    end
  end
end

local out = {}
local i = 1
while i <= #random or i <= #least do
  if random[i] then table.insert(out, random[i]) end
  if least[i] then table.insert(out, least[i]) end
  i = i + 1
end
return out
