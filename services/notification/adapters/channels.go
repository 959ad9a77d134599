package adapters

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/herald-events/herald/services/notification/app"
	"github.com/herald-events/herald/services/notification/domain"
)

// Log is the channel of last resort: it writes each notification to a
// structured log and always succeeds.
type Log struct {
	log *slog.Logger
}

var _ app.Channel = (*Log)(nil)

// NewLog returns a log channel writing to l (nil: [slog.Default]).
func NewLog(l *slog.Logger) *Log {
	if l == nil {
		l = slog.Default()
	}
	return &Log{log: l}
}

// Deliver logs n at level Info.
func (c *Log) Deliver(ctx context.Context, n domain.Notification) error {
	c.log.InfoContext(ctx, "notification", "notification_id", n.ID, "order_id", n.OrderID,
		"customer_id", n.CustomerID, "kind", n.Kind.String(), "text", n.Text)
	return nil
}

// WebhookConfig configures a [Webhook].
type WebhookConfig struct {
	// URL receives the POSTs. Required: an http or https URL.
	URL string
	// Timeout bounds one attempt (connect, send, response headers and
	// body). Default 5s.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one delivery; 5xx answers and
	// network errors are retried, 4xx answers are not. Default 3.
	MaxAttempts int
	// Backoff is the pause after the first failed attempt, doubled (with
	// jitter) after each further one up to MaxBackoff. Defaults 200ms and
	// 2s.
	Backoff, MaxBackoff time.Duration
	// Client sends the requests. Default a new client without a global
	// timeout (Timeout applies per attempt).
	Client *http.Client
}

// Webhook delivers a notification as an HTTP POST of a JSON
// [WebhookPayload] to a URL, with the notification id in the
// Idempotency-Key header so that the receiver can drop repeated
// deliveries.
type Webhook struct {
	cfg WebhookConfig
}

var _ app.Channel = (*Webhook)(nil)

// HeaderIdempotencyKey carries the notification id.
const HeaderIdempotencyKey = "Idempotency-Key"

// WebhookPayload is the JSON body of a webhook delivery.
type WebhookPayload struct {
	NotificationID string `json:"notification_id"`
	OrderID        string `json:"order_id"`
	CustomerID     string `json:"customer_id"`
	// Kind is CONFIRMED, REJECTED or CANCELLED.
	Kind string `json:"kind"`
	Text string `json:"text"`
	// CreateTime is RFC 3339.
	CreateTime string `json:"create_time"`
}

// NewWebhook validates cfg, fills its defaults and returns the channel.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook url %q: want an http(s) URL", cfg.URL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 2 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	return &Webhook{cfg: cfg}, nil
}

// Deliver POSTs n. It returns nil on a 2xx answer, an error wrapping
// [app.ErrRefused] on a 4xx answer (not retried), and the last error when
// every attempt met a 5xx answer, another status or a network error.
func (w *Webhook) Deliver(ctx context.Context, n domain.Notification) error {
	body, err := json.Marshal(WebhookPayload{
		NotificationID: n.ID, OrderID: n.OrderID, CustomerID: n.CustomerID, Kind: n.Kind.String(),
		Text: n.Text, CreateTime: n.Created.UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		return fmt.Errorf("webhook: encode notification %s: %w", n.ID, err)
	}
	wait := w.cfg.Backoff
	for attempt := 1; ; attempt++ {
		err := w.post(ctx, n.ID, body)
		if err == nil || errors.Is(err, app.ErrRefused) || ctx.Err() != nil {
			return err
		}
		if attempt >= w.cfg.MaxAttempts {
			return fmt.Errorf("%w (after %d attempts)", err, attempt)
		}
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, w.cfg.MaxBackoff)
	}
}

// post makes one attempt.
func (w *Webhook) post(ctx context.Context, id string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.cfg.URL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderIdempotencyKey, id)
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.cfg.URL, err)
	}
	defer resp.Body.Close()
	// Read (a bounded amount of) the body so the connection can be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return fmt.Errorf("webhook %s: %s %q: %w", w.cfg.URL, resp.Status, bytes.TrimSpace(snippet), app.ErrRefused)
	}
	return fmt.Errorf("webhook %s: %s %q", w.cfg.URL, resp.Status, bytes.TrimSpace(snippet))
}
