package status

// StepReboot is the step of the restart a document with the reboot policy
// "allowed" made the agent do (config.RebootAllowed): it comes after the
// apply steps, and its ms is the time from the agent's request to its start
// in the new boot.
const StepReboot = "reboot"
