-- Argo CD health check for reconciler.dev/Reconcile, from the kstatus conditions the operator
-- writes: Ready, Reconciling, Stalled, and status.observedGeneration.
local hs = {}

local function condition(conditions, ctype)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local generation = 0
if obj.metadata ~= nil and obj.metadata.generation ~= nil then
  generation = obj.metadata.generation
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the Reconcile"
  return hs
end

local conditions = obj.status.conditions
local ready = condition(conditions, "Ready")
local stalled = condition(conditions, "Stalled")
local reconciling = condition(conditions, "Reconciling")

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = describe(ready, "spec.suspend is true: no runs until it is false")
  return hs
end

local observed = obj.status.observedGeneration
if observed == nil or observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. string.format("%d", generation)
  return hs
end

-- Bad input that retrying cannot fix: no point in waiting.
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(ready, describe(stalled, "Stalled"))
  return hs
end

-- A Ready condition written for an older generation is stale.
local readyCurrent = ready ~= nil and (ready.observedGeneration == nil or ready.observedGeneration >= generation)

if readyCurrent and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(ready, describe(reconciling, "Reconciling"))
  return hs
end

if not readyCurrent or ready.status ~= "False" then
  hs.status = "Progressing"
  hs.message = describe(ready, "Waiting for the Ready condition")
  return hs
end

-- Ready=False, not stalled, not reconciling: the run failed and waits for its retry.
hs.status = "Degraded"
hs.message = describe(ready, "Not ready")
return hs
