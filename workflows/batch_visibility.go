package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"
)

// detailsEvery limits how often ended items refresh the UI details.
const detailsEvery = 10

// progress answers the progress query.
func (b *batch) progress(ctx workflow.Context) BatchProgress {
	st := b.st
	p := BatchProgress{
		Total: st.Total, Succeeded: st.Succeeded, Failed: st.Failed, Skipped: st.Skipped, Cancelled: st.Cancelled,
		Running: len(st.InFlight), Paused: st.Paused, MaxConcurrency: st.MaxConcurrency,
		GPUSeconds: st.GPUSecs, EstimatedCostUSD: st.CostUSD, StoppedBy: st.StoppedBy, Phase: b.phase,
	}
	if st.Total > 0 {
		p.Pending = max(st.Total-b.ledger.ended()-p.Running, 0)
	} else {
		p.Pending = b.pager.left() + len(st.Requeued)
	}
	elapsed := workflow.Now(ctx).Sub(st.StartedAt)
	if ended := b.ledger.ended(); ended > 0 && elapsed > 0 {
		p.RatePerMinute = float64(ended) / elapsed.Minutes()
		if st.Total > 0 && st.StoppedBy == "" {
			left := float64(p.Pending+p.Running) / p.RatePerMinute
			p.ETA = time.Duration(left * float64(time.Minute)).Round(time.Second).String()
		}
	}
	return p
}

// setPhase shows a phase change: the ComfyStatus search attribute (one
// history event per change, never per item) and the UI details.
func (b *batch) setPhase(ctx workflow.Context, phase string) {
	b.phase = phase
	if phase != b.shownStatus {
		if err := workflow.UpsertTypedSearchAttributes(ctx, StatusKey.ValueSet(phase)); err != nil {
			b.logger.Warn("Could not upsert search attributes", "Error", err)
		} else {
			b.shownStatus = phase
		}
	}
	b.showDetails(ctx)
}

// showDetails renders the short markdown view the Temporal UI shows.
func (b *batch) showDetails(ctx workflow.Context) {
	b.sinceShown = 0
	workflow.SetCurrentDetails(ctx, renderBatchDetails(b.progress(ctx), len(b.st.Pool)))
}

func renderBatchDetails(p BatchProgress, pool int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "**ComfyBatch** · %s", p.Phase)
	if pool > 1 {
		fmt.Fprintf(&sb, " · pool of %d deployments", pool)
	}
	ended := p.Succeeded + p.Failed + p.Skipped + p.Cancelled
	if p.Total > 0 {
		fmt.Fprintf(&sb, "\n\n%s %d / %d", progressBar(float64(ended)/float64(p.Total), 20), ended, p.Total)
	}
	fmt.Fprintf(&sb, "\n\n**Succeeded** %d · **Failed** %d · **Skipped** %d · **Running** %d of %d · **Pending** %d",
		p.Succeeded, p.Failed, p.Skipped, p.Running, p.MaxConcurrency, p.Pending)
	fmt.Fprintf(&sb, "\n\n**GPU** %.0f s", p.GPUSeconds)
	if p.EstimatedCostUSD > 0 {
		fmt.Fprintf(&sb, " · ~$%.2f", p.EstimatedCostUSD)
	}
	if p.RatePerMinute > 0 {
		fmt.Fprintf(&sb, " · %.1f items/min", p.RatePerMinute)
	}
	if p.ETA != "" {
		fmt.Fprintf(&sb, " · ETA %s", p.ETA)
	}
	if p.StoppedBy != "" {
		fmt.Fprintf(&sb, "\n\n**Stopped by:** %s", p.StoppedBy)
	}
	return sb.String()
}
