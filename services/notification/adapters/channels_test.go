package adapters_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-events/herald/services/notification/adapters"
	"github.com/herald-events/herald/services/notification/app"
	"github.com/herald-events/herald/services/notification/domain"
)

// receiver is a webhook endpoint that answers with the next of its
// statuses (the last one repeats) and records every request.
type receiver struct {
	mu       sync.Mutex
	statuses []int
	delay    time.Duration // before answering the first request
	got      []request
}

type request struct {
	method, contentType, key string
	body                     adapters.WebhookPayload
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var p adapters.WebhookPayload
	_ = json.Unmarshal(raw, &p)
	rc.mu.Lock()
	rc.got = append(rc.got, request{r.Method, r.Header.Get("Content-Type"), r.Header.Get(adapters.HeaderIdempotencyKey), p})
	n := len(rc.got)
	code := rc.statuses[min(n, len(rc.statuses))-1]
	delay := rc.delay
	rc.mu.Unlock()
	if n == 1 && delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	w.WriteHeader(code)
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.got...)
}

func webhook(t *testing.T, rc *receiver, timeout time.Duration) *adapters.Webhook {
	t.Helper()
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	w, err := adapters.NewWebhook(adapters.WebhookConfig{URL: srv.URL + "/hook", MaxAttempts: 4,
		Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

var note = domain.Notification{
	ID: "0190-note-1", OrderID: "o-1", CustomerID: "alice", Kind: domain.KindConfirmed,
	Text: "Your order o-1 is confirmed. Total: EUR 4.50.", Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
}

func TestWebhookRetriesServerErrorsThenSucceeds(t *testing.T) {
	rc := &receiver{statuses: []int{500, 503, 200}}
	if err := webhook(t, rc, time.Second).Deliver(context.Background(), note); err != nil {
		t.Fatalf("Deliver = %v, want success on the third attempt", err)
	}
	got := rc.requests()
	if len(got) != 3 {
		t.Fatalf("%d requests, want 3 (500, 503, 200)", len(got))
	}
	want := adapters.WebhookPayload{NotificationID: note.ID, OrderID: "o-1", CustomerID: "alice", Kind: "CONFIRMED",
		Text: note.Text, CreateTime: "2025-01-02T03:04:05Z"}
	for i, r := range got {
		if r.method != http.MethodPost || r.contentType != "application/json" {
			t.Errorf("request %d: %s with Content-Type %q, want a JSON POST", i, r.method, r.contentType)
		}
		if r.key != note.ID {
			t.Errorf("request %d: Idempotency-Key %q, want the notification id %q", i, r.key, note.ID)
		}
		if r.body != want {
			t.Errorf("request %d: body %+v, want %+v", i, r.body, want)
		}
	}
}

func TestWebhookDoesNotRetryClientErrors(t *testing.T) {
	for _, code := range []int{400, 404, 422} {
		rc := &receiver{statuses: []int{code, 200}}
		err := webhook(t, rc, time.Second).Deliver(context.Background(), note)
		if !errors.Is(err, app.ErrRefused) {
			t.Fatalf("Deliver on %d = %v, want ErrRefused", code, err)
		}
		if n := len(rc.requests()); n != 1 {
			t.Fatalf("%d requests on %d, want 1 (no retry)", n, code)
		}
	}
}

func TestWebhookGivesUpAfterMaxAttempts(t *testing.T) {
	rc := &receiver{statuses: []int{502}}
	err := webhook(t, rc, time.Second).Deliver(context.Background(), note)
	if err == nil || errors.Is(err, app.ErrRefused) || !strings.Contains(err.Error(), "502") {
		t.Fatalf("Deliver = %v, want a transient error naming 502", err)
	}
	if n := len(rc.requests()); n != 4 {
		t.Fatalf("%d requests, want MaxAttempts = 4", n)
	}
}

func TestWebhookTimesOutAndRetries(t *testing.T) {
	rc := &receiver{statuses: []int{200}, delay: time.Second}
	start := time.Now()
	if err := webhook(t, rc, 100*time.Millisecond).Deliver(context.Background(), note); err != nil {
		t.Fatalf("Deliver = %v, want success after a timed-out first attempt", err)
	}
	if n := len(rc.requests()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
	if took := time.Since(start); took > 900*time.Millisecond {
		t.Fatalf("took %s: the first attempt was not cut at its timeout", took)
	}
}

func TestWebhookNetworkErrorIsTransient(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	w, err := adapters.NewWebhook(adapters.WebhookConfig{URL: url, MaxAttempts: 2, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Deliver(context.Background(), note); err == nil || errors.Is(err, app.ErrRefused) {
		t.Fatalf("Deliver to a closed port = %v, want a transient error", err)
	}
}

func TestNewWebhookValidatesURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "http://", "not a url"} {
		if _, err := adapters.NewWebhook(adapters.WebhookConfig{URL: u}); err == nil {
			t.Errorf("NewWebhook(%q) succeeded", u)
		}
	}
}

func TestLogChannel(t *testing.T) {
	var buf bytes.Buffer
	c := adapters.NewLog(slog.New(slog.NewTextHandler(&buf, nil)))
	if err := c.Deliver(context.Background(), note); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"notification_id=0190-note-1", "order_id=o-1", "customer_id=alice", "kind=CONFIRMED"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log line %q lacks %s", buf.String(), want)
		}
	}
}
