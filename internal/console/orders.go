package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	"github.com/herald-events/herald/platform/bus"
)

// orders is the search page: by order id (straight to its timeline) or by
// customer (the orders service's ListOrders, in process).
func (c *Console) orders(w http.ResponseWriter, r *http.Request, s *session) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	data := map[string]any{"Title": "Orders", "Query": q, "CanList": c.cfg.Orders != nil}
	if q == "" {
		c.render(w, r, "orders", s, data)
		return
	}
	if c.cfg.Orders != nil {
		ctx := operatorContext(r.Context(), s)
		if _, err := c.cfg.Orders.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: q}); err == nil {
			http.Redirect(w, r, Prefix+"orders/"+url.PathEscape(q), http.StatusSeeOther)
			return
		}
		resp, err := c.cfg.Orders.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: q, PageSize: 50})
		if err != nil {
			data["Error"] = err.Error()
		} else {
			data["Orders"] = resp.GetOrders()
		}
		if len(resp.GetOrders()) == 0 && data["Error"] == nil {
			data["Error"] = "no order with id " + q + ", and no order of a customer " + q
		}
		c.render(w, r, "orders", s, data)
		return
	}
	// Without the orders service in this process, an id is looked up on
	// the topics.
	http.Redirect(w, r, Prefix+"orders/"+url.PathEscape(q), http.StatusSeeOther)
}

// timeline is one order's saga as a page shows it.
type timeline struct {
	OrderID   string
	Order     *ordersv1.Order
	Status    string
	Final     bool
	Records   []*record
	Stopped   string // where and why the saga stopped, if it did
	TraceID   string
	Window    string // the bound of the read, said on the page
	Took      time.Duration
	Error     string
	Searching []string
}

func (c *Console) order(w http.ResponseWriter, r *http.Request, s *session) {
	tl := c.timeline(r.Context(), s, r.PathValue("id"))
	c.render(w, r, "order", s, map[string]any{"Title": "Order " + tl.OrderID, "T": tl})
}

func (c *Console) timelineFragment(w http.ResponseWriter, r *http.Request, s *session) {
	tl := c.timeline(r.Context(), s, r.PathValue("id"))
	c.render(w, r, "order", s, map[string]any{"T": tl, "Fragment": "timeline"})
}

// timeline gathers every record about an order: on each event topic and
// dead-letter topic, the one partition its key hashes to, from a minute
// before the order was created (or, when its time is unknown, the last
// Window records) and at most Window records further.
func (c *Console) timeline(ctx context.Context, s *session, id string) *timeline {
	start := time.Now()
	tl := &timeline{OrderID: id}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var since time.Time
	if c.cfg.Orders != nil {
		resp, err := c.cfg.Orders.GetOrder(operatorContext(ctx, s), &ordersv1.GetOrderRequest{OrderId: id})
		if err == nil {
			tl.Order = resp.GetOrder()
			tl.Status = strings.TrimPrefix(tl.Order.GetStatus().String(), "ORDER_STATUS_")
			tl.Final = tl.Order.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PENDING
			if ct := tl.Order.GetCreateTime(); ct != nil {
				since = ct.AsTime().Add(-time.Minute)
			}
		} else {
			tl.Status = "not found by the orders service"
			tl.Final = true // nothing to wait for
		}
	}
	var topics []string
	for _, t := range c.cfg.Topics {
		topics = append(topics, t, bus.DeadLetterTopic(t))
	}
	tl.Searching = topics
	offs, err := c.offsetsOf(ctx, topics...)
	if err != nil {
		tl.Error = err.Error()
		return tl
	}
	var froms map[string]map[int32]int64
	if !since.IsZero() {
		froms = map[string]map[int32]int64{}
		listed, err := c.adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topics...)
		if err == nil {
			listed.Each(func(l kadm.ListedOffset) {
				if l.Err == nil {
					if froms[l.Topic] == nil {
						froms[l.Topic] = map[int32]int64{}
					}
					froms[l.Topic][l.Partition] = l.Offset
				}
			})
		}
		tl.Window = "from a minute before the order was created, at most " + itoa(c.cfg.Window) + " records of the key's partition of each topic"
	} else {
		tl.Window = "the last " + itoa(c.cfg.Window) + " records of the key's partition of each topic"
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, t := range topics {
		o := offs[t]
		n := len(o.Stable)
		if n == 0 {
			continue
		}
		p := partitionOf(t, id, n)
		sp := o.tail(p, c.cfg.Window)
		if f, ok := froms[t][p]; ok {
			sp = span{Partition: p, From: max(f, o.Start[p]), To: min(o.Stable[p], max(f, o.Start[p])+int64(c.cfg.Window))}
		}
		wg.Go(func() {
			recs, err := c.readSpans(ctx, t, []span{sp})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			for _, rec := range recs {
				if string(rec.Key) == id || header(rec, "ce_subject") == id {
					tl.Records = append(tl.Records, c.view(rec))
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tl.Error = err.Error()
	}
	slices.SortStableFunc(tl.Records, func(a, b *record) int { return a.Time.Compare(b.Time) })
	c.consumers(ctx, tl.Records)
	var prev time.Time
	for _, rec := range tl.Records {
		if !prev.IsZero() {
			rec.Step, rec.HasStep = rec.Time.Sub(prev), true
		}
		prev = rec.Time
		if tl.TraceID == "" {
			tl.TraceID = rec.TraceID
		}
	}
	if c.cfg.Orders == nil {
		// No status to ask for: the saga has ended when its last event
		// ends an order, or when nothing about it was found.
		n := len(tl.Records)
		tl.Final = n == 0 || finalEvent(tl.Records[n-1].Type)
	}
	tl.Stopped = stopped(tl)
	tl.Took = time.Since(start)
	return tl
}

// finalEvent reports whether an event type ends an order's saga (an
// OrderConfirmed order may still be cancelled, which a reload shows).
func finalEvent(typ string) bool {
	for _, m := range []proto.Message{&ordersv1.OrderConfirmed{}, &ordersv1.OrderRejected{}, &ordersv1.OrderCancelled{}} {
		if string(proto.MessageName(m)) == typ {
			return true
		}
	}
	return false
}

// stopped says where the saga stopped and why, or "".
func stopped(tl *timeline) string {
	for _, rec := range slices.Backward(tl.Records) {
		if rec.DeadLetter {
			return "dead-lettered by " + rec.Group + " (" + rec.Class + "): " + rec.Reason
		}
	}
	if tl.Order != nil && tl.Order.GetRejectionReason() != "" {
		return "rejected: " + tl.Order.GetRejectionReason()
	}
	if n := len(tl.Records); n > 0 {
		last := tl.Records[n-1]
		if len(last.PendingFor) > 0 {
			return last.Type + " waits for " + strings.Join(last.PendingFor, ", ")
		}
	}
	return ""
}

// consumers marks, for each record, the groups that handle its type and
// have committed past it, and those that have not yet.
func (c *Console) consumers(ctx context.Context, recs []*record) {
	committed := map[string]kadm.OffsetResponses{}
	for _, rec := range recs {
		if rec.DeadLetter {
			continue
		}
		for _, g := range c.cfg.Consumers {
			if !slices.Contains(g.Topics, rec.Topic) || !slices.Contains(g.Types, rec.Type) {
				continue
			}
			offs, ok := committed[g.Group]
			if !ok {
				var err error
				offs, err = c.adm.FetchOffsets(ctx, g.Group)
				if err != nil {
					c.log.Debug("console: committed offsets", "group", g.Group, "err", err)
				}
				committed[g.Group] = offs
			}
			if o, ok := offs.Lookup(rec.Topic, rec.Partition); ok && o.Err == nil && o.At > rec.Offset {
				rec.ConsumedBy = append(rec.ConsumedBy, g.Group)
			} else {
				rec.PendingFor = append(rec.PendingFor, g.Group)
			}
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
