// Package contract holds the names of the wire contract between producers,
// mautic-sync and the consumers of its outcomes (README, "The event contract
// for producers"): the dead-letter headers, reasons and result outcomes.
// Both the worker, which writes outcomes, and the operator's tools, which
// read them, use these names; the package imports nothing.
package contract

// Dead-letter headers added to the input's own.
const (
	HeaderReason     = "Mautic-Sync-Reason"
	HeaderError      = "Mautic-Sync-Error"
	HeaderStatus     = "Mautic-Sync-Status"
	HeaderSubject    = "Mautic-Sync-Subject"
	HeaderStreamSeq  = "Mautic-Sync-Stream-Seq"
	HeaderDeliveries = "Mautic-Sync-Deliveries"
	HeaderFailedAt   = "Mautic-Sync-Failed-At"
	// HeaderBodyOmitted is added (with the input's size in bytes) when the
	// input body had to be left out: with the headers above it exceeded
	// the server's max_payload. An addition to the contract.
	HeaderBodyOmitted = "Mautic-Sync-Body-Omitted"

	// HeaderPrefix starts every header mautic-sync adds to a dead letter.
	HeaderPrefix = "Mautic-Sync-"
)

// Dead-letter reasons (header Mautic-Sync-Reason).
const (
	ReasonInvalidEvent  = "invalid_event"
	ReasonRejected      = "rejected"
	ReasonMaxDeliveries = "max_deliveries"
)

// Outcomes of a result message.
const (
	OutcomeApplied   = "applied"
	OutcomeUnchanged = "unchanged"
	OutcomeDuplicate = "duplicate"
)
