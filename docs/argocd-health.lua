-- Argo CD health check for cronlet.dev/ScheduledTask (docs/operations.md, "GitOps: Argo CD and Flux").
-- Argo CD runs it in gopher-lua (Lua 5.1) with the live object as `obj`; tests/shipped/test_argocd_health.py
-- runs it on the statuses the operator writes.
--   Progressing  the operator has not acted on this generation of the spec yet
--   Suspended    spec.suspend is true
--   Degraded     the task cannot run (Ready=False: an invalid spec, an unreadable status, a refused Job),
--                or its last run failed after its retries (phase Failed)
--   Healthy      scheduled, running or waiting to retry a run
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local status = obj.status
local generation = obj.metadata and obj.metadata.generation or 0
if status == nil or status.observedGeneration == nil or status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on this spec"
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. (ready.message or "")
  return hs
end

if (obj.spec ~= nil and obj.spec.suspend == true) or status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "Suspended: no new runs start"
  return hs
end

if status.phase == "Failed" then
  local last = condition(status, "LastRunSucceeded")
  hs.status = "Degraded"
  hs.message = last ~= nil and (last.reason .. ": " .. (last.message or "")) or "The last run failed"
  return hs
end

hs.status = "Healthy"
if status.phase == "Retrying" and status.nextRetryTime ~= nil then
  hs.message = "Retrying: attempt " .. tostring((status.currentAttempt or 1) + 1) .. " at " .. status.nextRetryTime
elseif status.nextRunTime ~= nil then
  hs.message = (status.phase or "Scheduled") .. ": next run at " .. status.nextRunTime
else
  hs.message = status.phase or "Scheduled"
end
return hs
