package workflows

import "github.com/durable-comfy/durable-comfy/activities"

// pager hands out the batch's items a page at a time. st.Cursor is where
// the current page starts and st.Taken how many of it were taken (both
// carried by continue-as-new); page holds the rest of it once loaded.
// Inline items are paged here; a source is read by an activity whose
// result the batch passes to load.
type pager struct {
	st   *BatchState
	size int
	page []activities.BatchItem
	// next and eof are where the page after this one starts, and whether
	// there is none; loaded says whether page holds the current page.
	next   activities.BatchCursor
	eof    bool
	loaded bool
	// takenHere counts the items this run took: it continues as new after
	// a page's worth.
	takenHere int
}

func newPager(st *BatchState, pageSize int) *pager {
	if pageSize <= 0 {
		pageSize = DefaultBatchPageSize
	}
	return &pager{st: st, size: pageSize}
}

// inline pages inline items like a source read would.
func (p *pager) inline(items []map[string]any) activities.ReadBatchItemsResult {
	var res activities.ReadBatchItemsResult
	start := min(p.st.Cursor.Index, len(items))
	end := min(start+p.size, len(items))
	for i := start; i < end; i++ {
		res.Items = append(res.Items, activities.BatchItem{Index: i, Inputs: items[i]})
	}
	res.Next, res.EOF = activities.BatchCursor{Index: end}, end == len(items)
	return res
}

// load takes the page that starts at st.Cursor, without the items of it
// already taken. A page with nothing left moves the cursor on, or marks the
// end.
func (p *pager) load(res activities.ReadBatchItemsResult) {
	p.page, p.next, p.eof, p.loaded = res.Items[min(p.st.Taken, len(res.Items)):], res.Next, res.EOF, true
	if len(p.page) == 0 {
		p.st.EOF = res.EOF || res.Next.Index == p.st.Cursor.Index && res.Next.Byte == p.st.Cursor.Byte
		p.st.Cursor, p.st.Taken, p.loaded = res.Next, 0, false
	}
}

// take hands out the next item of the loaded page; taking its last item
// moves the cursor to the next page.
func (p *pager) take() (activities.BatchItem, bool) {
	if len(p.page) == 0 {
		return activities.BatchItem{}, false
	}
	item := p.page[0]
	p.page = p.page[1:]
	p.st.Taken++
	p.takenHere++
	if len(p.page) == 0 {
		p.st.Cursor, p.st.Taken, p.loaded = p.next, 0, false
		p.st.EOF = p.eof
	}
	return item, true
}

// left is how many items of the loaded page are still to take.
func (p *pager) left() int { return len(p.page) }

// more says whether items are left to take, read or not.
func (p *pager) more() bool { return len(p.page) > 0 || !p.st.EOF }

// exhausted says whether every item was taken.
func (p *pager) exhausted() bool { return p.st.EOF && len(p.page) == 0 }

// runFull says whether this run took its page's worth of items.
func (p *pager) runFull() bool { return p.takenHere >= p.size }
