-- Each key's value, or 1 where it starts with the watermark the worker's cached state carries.
local out = {}
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  local watermark = ARGV[i]
  if value and watermark ~= '' and string.sub(value, 1, #watermark) == watermark then
    out[i] = 1
  else
    out[i] = value or false
  end
end
return out
