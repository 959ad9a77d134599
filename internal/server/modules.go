package server

import (
	"slices"

	"github.com/herald-events/herald/platform/module"
	"github.com/herald-events/herald/services/inventory"
	"github.com/herald-events/herald/services/logistics"
	"github.com/herald-events/herald/services/notification"
	"github.com/herald-events/herald/services/orders"
	"github.com/herald-events/herald/services/points"
	"github.com/herald-events/herald/services/risk"
)

// Modules are the services a herald process can run, in start order.
// Adding a service is a folder under services/ and one line here.
func Modules() []module.Module {
	return []module.Module{
		orders.Module(),
		inventory.Module(),
		notification.Module(),
		points.Module(),
		logistics.Module(),
		risk.Module(),
	}
}

// KnownServices lists the names of [Modules].
func KnownServices() []string { return namesOf(Modules()) }

func namesOf(ms []module.Module) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

// modules returns the configured modules (default [Modules]).
func (c *Config) modules() []module.Module {
	if c.Modules != nil {
		return c.Modules
	}
	return Modules()
}

// selected returns the modules of c.Services, in start order.
func (c *Config) selected() []module.Module {
	var out []module.Module
	for _, m := range c.modules() {
		if slices.Contains(c.Services, m.Name) {
			out = append(out, m)
		}
	}
	return out
}

// Subscriptions lists every consumer group of the known modules (in
// namespace) and the topics it reads, whether or not this process runs it.
func Subscriptions(namespace string) map[string][]string {
	return subscriptions(Modules(), namespace)
}

func subscriptions(ms []module.Module, namespace string) map[string][]string {
	out := map[string][]string{}
	for _, m := range ms {
		if topics := m.Topics(namespace); len(topics) > 0 {
			out[m.Names(namespace, "").Group()] = topics
		}
	}
	return out
}

// SettingFlag is the flag of a module's setting: "<module>-<key>".
func SettingFlag(m module.Module, s module.Setting) string { return m.Name + "-" + s.Key }
