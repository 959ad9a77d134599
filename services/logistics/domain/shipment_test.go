package domain_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/herald-events/herald/services/logistics/domain"
)

var (
	t0    = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	t1    = t0.Add(time.Minute)
	t2    = t0.Add(2 * time.Minute)
	lines = []domain.Line{{SKU: "APPLE", Quantity: 3}, {SKU: "PEAR", Quantity: 1}}
)

func TestReserveThenRelease(t *testing.T) {
	s, changed := domain.Reserve(nil, "o-1", lines, t0)
	if !changed || s.Status != domain.StatusReserved || !reflect.DeepEqual(s.Lines, lines) || s.OrderID != "o-1" {
		t.Fatalf("Reserve(nil) = %+v, %v; want RESERVED with the lines", s, changed)
	}
	again, changed := domain.Reserve(s, "o-1", []domain.Line{{SKU: "KIWI", Quantity: 9}}, t1)
	if changed || again != s {
		t.Fatalf("second Reserve = %+v, %v; want the shipment unchanged", again, changed)
	}
	r, changed := domain.Release(s, "o-1", t1)
	if !changed || r.Status != domain.StatusReleased || !reflect.DeepEqual(r.Lines, lines) || !r.Created.Equal(t0) || !r.Updated.Equal(t1) {
		t.Fatalf("Release(reserved) = %+v, %v; want RELEASED keeping lines and creation time", r, changed)
	}
	if s.Status != domain.StatusReserved {
		t.Fatal("Release modified its input")
	}
	r2, changed := domain.Release(r, "o-1", t2)
	if changed || r2 != r {
		t.Fatalf("second Release = %+v, %v; want unchanged", r2, changed)
	}
}

func TestCancelBeforeReserve(t *testing.T) {
	r, changed := domain.Release(nil, "o-2", t0)
	if !changed || r.Status != domain.StatusReleased || len(r.Lines) != 0 || r.OrderID != "o-2" {
		t.Fatalf("Release(nil) = %+v, %v; want a recorded RELEASED without lines", r, changed)
	}
	late, changed := domain.Reserve(r, "o-2", lines, t1)
	if changed || late.Status != domain.StatusReleased || len(late.Lines) != 0 {
		t.Fatalf("Reserve after the cancel = %+v, %v; want still RELEASED, nothing reserved", late, changed)
	}
}

// TestEveryOrderEndsTheSame applies a deduction and a cancel in both
// orders, with replays: the end state is RELEASED either way.
func TestEveryOrderEndsTheSame(t *testing.T) {
	type step func(*domain.Shipment) *domain.Shipment
	reserve := func(s *domain.Shipment) *domain.Shipment { n, _ := domain.Reserve(s, "o", lines, t1); return n }
	release := func(s *domain.Shipment) *domain.Shipment { n, _ := domain.Release(s, "o", t2); return n }
	for name, steps := range map[string][]step{
		"reserve, release":                   {reserve, release},
		"release, reserve":                   {release, reserve},
		"reserve, reserve, release":          {reserve, reserve, release},
		"release, reserve, release, reserve": {release, reserve, release, reserve},
	} {
		t.Run(name, func(t *testing.T) {
			var s *domain.Shipment
			for _, st := range steps {
				s = st(s)
			}
			if s.Status != domain.StatusReleased {
				t.Fatalf("end state %s, want RELEASED", s.Status)
			}
		})
	}
}
