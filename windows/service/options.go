package service

// Name is the service's name, which is also its Event Log source.
const Name = "prewarm-agent"

// DisplayName is the name the Services console shows.
const DisplayName = "Prewarm guest agent"

// Description is the service's description.
const Description = "Fetches this VM's configuration from the Prewarm IMDS, applies it and reports back."

// KardianosOptions returns the kardianos/service Config.Option entries for
// the agent on Windows: automatic start, and restart after a failure (after
// 5 s; the failure count resets after a day). Use as
// service.Config{Name: Name, DisplayName: DisplayName, Description:
// Description, Option: KardianosOptions()}.
func KardianosOptions() map[string]any {
	return map[string]any{
		"StartType":              "automatic",
		"DelayedAutoStart":       false,
		"OnFailure":              "restart",
		"OnFailureDelayDuration": "5s",
		"OnFailureResetPeriod":   86400,
	}
}
