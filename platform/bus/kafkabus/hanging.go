package kafkabus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Hanging is a transaction open on a partition for longer than the broker
// lets an undecided one live: its last stable offset holds read_committed
// readers (and, on __consumer_offsets, every offset fetch of the groups
// stored there) until markers close it.
//
// A single Kafka broker that restarts while a transaction is being
// committed can lose its markers: the restarted coordinator finishes the
// transaction before it knows the partition's leader and skips the
// partition ("likely deleted already"). The coordinator has decided; the
// partition never hears of it (docs/reliability.md, "Broker restart").
type Hanging struct {
	Topic     string
	Partition int32
	// The producer holding the transaction open on the partition.
	ProducerID       int64
	ProducerEpoch    int16
	CoordinatorEpoch int32
	// StartOffset is the transaction's first offset on the partition.
	StartOffset int64
	// LastWrite is when the producer last wrote to the partition.
	LastWrite time.Time
	// TransactionalID is the producer's, "" when the coordinator no
	// longer lists one for it; State is the coordinator's state of it.
	TransactionalID string
	State           string
	// Decided is true when the coordinator's last transaction of the
	// producer is this one and it ended: Commit is its decision, and
	// MarkerEpoch the producer epoch the coordinator holds now, which its
	// markers carry (the transaction's, or the next one where the end of a
	// transaction bumps the epoch, KIP-890).
	Decided, Commit bool
	MarkerEpoch     int16
	// Why tells why the decision is not known, when it is not.
	Why string
}

// ConsumerOffsetsTopic is Kafka's internal topic of the groups' committed
// offsets, which consumer transactions write to.
const ConsumerOffsetsTopic = "__consumer_offsets"

// TopicsWithPrefix lists the topics whose names start with prefix, Kafka's
// internal ones excepted, sorted; with consumerOffsets also
// [ConsumerOffsetsTopic]. They are the partitions [FindHanging] looks at
// for one namespace's producers and consumer groups.
func TopicsWithPrefix(ctx context.Context, adm *kadm.Client, prefix string, consumerOffsets bool) ([]string, error) {
	topics, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var names []string
	for _, t := range topics.Sorted() {
		if (consumerOffsets && t.Topic == ConsumerOffsetsTopic) || (!t.IsInternal && strings.HasPrefix(t.Topic, prefix)) {
			names = append(names, t.Topic)
		}
	}
	return names, nil
}

// FindHanging lists the transactions that have been open on a partition of
// topics for at least minOpen since their producer last wrote there, and,
// for each, what the transaction coordinator decided. minOpen must exceed
// the producers' transaction timeout, after which the broker aborts a
// transaction that nobody ended: one still open after that was ended
// without its markers reaching the partition.
func FindHanging(ctx context.Context, adm *kadm.Client, minOpen time.Duration, topics ...string) ([]Hanging, error) {
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("hanging transactions: end offsets: %w", err)
	}
	stable, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("hanging transactions: last stable offsets: %w", err)
	}
	held := kadm.TopicsSet{}
	stable.Each(func(o kadm.ListedOffset) {
		if end, ok := ends.Lookup(o.Topic, o.Partition); ok && o.Err == nil && o.Offset < end.Offset {
			held.Add(o.Topic, o.Partition)
		}
	})
	if len(held) == 0 {
		return nil, nil
	}
	producers, err := adm.DescribeProducers(ctx, held)
	if err != nil {
		return nil, fmt.Errorf("hanging transactions: describe producers: %w", err)
	}
	var out []Hanging
	producers.EachProducer(func(p kadm.DescribedProducer) {
		last := time.UnixMilli(p.LastTimestamp)
		if p.CurrentTxnStartOffset < 0 || time.Since(last) < minOpen {
			return
		}
		out = append(out, Hanging{
			Topic: p.Topic, Partition: p.Partition,
			ProducerID: p.ProducerID, ProducerEpoch: p.ProducerEpoch, CoordinatorEpoch: p.CoordinatorEpoch,
			StartOffset: p.CurrentTxnStartOffset, LastWrite: last,
		})
	})
	if len(out) == 0 {
		return nil, nil
	}
	ids := make([]int64, 0, len(out))
	for _, h := range out {
		ids = append(ids, h.ProducerID)
	}
	listed, err := adm.ListTransactions(ctx, ids, nil)
	if err != nil {
		return nil, fmt.Errorf("hanging transactions: list transactions: %w", err)
	}
	byProducer := map[int64]string{}
	for _, t := range listed.Sorted() {
		byProducer[t.ProducerID] = t.TxnID
	}
	var txnIDs []string
	for _, id := range byProducer {
		txnIDs = append(txnIDs, id)
	}
	described := kadm.DescribedTransactions{}
	if len(txnIDs) > 0 {
		if described, err = adm.DescribeTransactions(ctx, txnIDs...); err != nil {
			return nil, fmt.Errorf("hanging transactions: describe transactions: %w", err)
		}
	}
	for i := range out {
		h := &out[i]
		h.TransactionalID = byProducer[h.ProducerID]
		d, ok := described[h.TransactionalID]
		switch {
		case h.TransactionalID == "":
			h.Why = "the coordinator lists no transactional id for the producer"
		case !ok || d.Err != nil:
			h.Why = fmt.Sprintf("the coordinator did not describe %s: %v", h.TransactionalID, d.Err)
		default:
			h.State = d.State
			h.decide(d)
		}
	}
	slices.SortFunc(out, func(a, b Hanging) int {
		return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out, nil
}

// decide takes the coordinator's decision for h from d, the coordinator's
// description of h's transactional id, when d's last transaction is h's:
// same producer id, ended (CompleteCommit or CompleteAbort), with the
// producer's epoch or the next one (a transaction's end bumps the epoch
// under KIP-890), and begun no later than the producer last wrote to h's
// partition (a producer runs one transaction at a time, so a later one
// would have begun after h's ended).
func (h *Hanging) decide(d kadm.DescribedTransaction) {
	switch {
	case d.ProducerID != h.ProducerID:
		h.Why = fmt.Sprintf("%s has another producer id now (%d)", h.TransactionalID, d.ProducerID)
	case d.State != "CompleteCommit" && d.State != "CompleteAbort":
		h.Why = fmt.Sprintf("%s is %s, not ended", h.TransactionalID, d.State)
	case d.ProducerEpoch != h.ProducerEpoch && d.ProducerEpoch != h.ProducerEpoch+1:
		h.Why = fmt.Sprintf("%s is at epoch %d, the partition's transaction at %d: later transactions ran", h.TransactionalID, d.ProducerEpoch, h.ProducerEpoch)
	case d.StartTimestamp < 0 || time.UnixMilli(d.StartTimestamp).After(h.LastWrite):
		h.Why = fmt.Sprintf("%s's last transaction began after the partition's was last written", h.TransactionalID)
	default:
		h.Decided, h.Commit, h.MarkerEpoch = true, d.State == "CompleteCommit", d.ProducerEpoch
	}
}

// Resolve writes, for each decided transaction of hs, the coordinator's
// decision to its partition (a commit or abort marker, as the coordinator
// would have), which closes the transaction there; undecided ones are left
// alone. Writing markers needs the CLUSTER_ACTION permission where ACLs
// are enforced. It returns the transactions it closed, and the errors of
// the others joined. A partition that answers TRANSACTION_COORDINATOR_FENCED
// got a marker from a newer coordinator since it was found: it is neither
// closed here nor an error (list again to see where it stands).
func Resolve(ctx context.Context, adm *kadm.Client, hs []Hanging) ([]Hanging, error) {
	var closed []Hanging
	var errs []error
	for _, h := range hs {
		if !h.Decided {
			continue
		}
		if err := h.writeMarker(ctx, adm); err != nil {
			if !errors.Is(err, kerr.TransactionCoordinatorFenced) {
				errs = append(errs, fmt.Errorf("write %s marker to %s/%d: %w", h.Decision(), h.Topic, h.Partition, err))
			}
			continue
		}
		closed = append(closed, h)
	}
	return closed, errors.Join(errs...)
}

func (h Hanging) writeMarker(ctx context.Context, adm *kadm.Client) error {
	topics := kadm.TopicsSet{}
	topics.Add(h.Topic, h.Partition)
	resp, err := adm.WriteTxnMarkers(ctx, kadm.TxnMarkers{
		ProducerID: h.ProducerID, ProducerEpoch: h.MarkerEpoch, Commit: h.Commit,
		CoordinatorEpoch: h.CoordinatorEpoch, Topics: topics,
	})
	if err != nil {
		return err
	}
	for _, r := range resp {
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				if p.Err != nil {
					return p.Err
				}
			}
		}
	}
	return nil
}

// Decision is "commit" or "abort" for a decided transaction, "" for one
// that is not.
func (h Hanging) Decision() string {
	switch {
	case !h.Decided:
		return ""
	case h.Commit:
		return "commit"
	default:
		return "abort"
	}
}
