package actions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Unanswered marks the error of a request that changes something with
// ErrOutcomeUnknown when it says the request may have gone out and its
// answer never came: a deadline, a connection closed or reset mid-request,
// an API server's or gateway's timeout. The engine then reports the run's
// outcome as unknown, for a person to check, instead of as failed (a
// failure would count against the runbook's breaker and offer no check).
//
// A request that could not be sent (no connection could be made, the name
// did not resolve) or that was answered with a refusal is left as it is:
// nothing was changed.
func Unanswered(err error) error {
	if err == nil || errors.Is(err, ErrOutcomeUnknown) || notSent(err) {
		return err
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.As(err, &ne) && ne.Timeout(),
		apierrors.IsTimeout(err), apierrors.IsServerTimeout(err):
		return fmt.Errorf("%w (%w)", err, ErrOutcomeUnknown)
	}
	return err
}

// notSent reports whether err happened before a request could be sent:
// dialling or resolving failed.
func notSent(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &op) && op.Op == "dial" || errors.As(err, &dns)
}
