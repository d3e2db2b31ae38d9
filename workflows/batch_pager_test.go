package workflows

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/durable-comfy/durable-comfy/activities"
)

func TestPagerInlinePages(t *testing.T) {
	st := &BatchState{}
	p := newPager(st, 2)
	items := prompts(5)
	var taken []int
	for pages := 0; p.more(); pages++ {
		require.Less(t, pages, 10)
		if !p.loaded {
			p.load(p.inline(items))
		}
		item, ok := p.take()
		require.True(t, ok)
		taken = append(taken, item.Index)
	}
	require.Equal(t, []int{0, 1, 2, 3, 4}, taken)
	require.True(t, p.exhausted())
	require.Equal(t, 5, p.takenHere)
	require.True(t, p.runFull())
	_, ok := p.take()
	require.False(t, ok)
}

func TestPagerLoad(t *testing.T) {
	page := func(from, to int, eof bool) activities.ReadBatchItemsResult {
		var res activities.ReadBatchItemsResult
		for i := from; i < to; i++ {
			res.Items = append(res.Items, activities.BatchItem{Index: i})
		}
		res.Next, res.EOF = activities.BatchCursor{Index: to, Byte: int64(to * 10)}, eof
		return res
	}
	cases := []struct {
		name       string
		st         BatchState
		res        activities.ReadBatchItemsResult
		wantLeft   int
		wantCursor int
		wantEOF    bool
		wantLoaded bool
	}{
		{"a fresh page", BatchState{}, page(0, 3, false), 3, 0, false, true},
		{"a continued run skips the items taken", BatchState{Taken: 2}, page(0, 3, false), 1, 0, false, true},
		{"a page with nothing left moves on", BatchState{Taken: 3}, page(0, 3, false), 0, 3, false, false},
		{"an empty last page ends", BatchState{Cursor: activities.BatchCursor{Index: 3}}, page(3, 3, true), 0, 3, true, false},
		{"a cursor that does not move ends", BatchState{Cursor: activities.BatchCursor{Index: 3, Byte: 30}}, page(3, 3, false), 0, 3, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPager(&tc.st, 0)
			require.Equal(t, DefaultBatchPageSize, p.size)
			p.load(tc.res)
			require.Equal(t, tc.wantLeft, p.left())
			require.Equal(t, tc.wantCursor, tc.st.Cursor.Index)
			require.Equal(t, tc.wantEOF, tc.st.EOF)
			require.Equal(t, tc.wantLoaded, p.loaded)
		})
	}
}

func TestPagerTakeMovesTheCursorAtThePageEnd(t *testing.T) {
	st := &BatchState{}
	p := newPager(st, 2)
	p.load(activities.ReadBatchItemsResult{Items: []activities.BatchItem{{Index: 0}, {Index: 1}}, Next: activities.BatchCursor{Index: 2, Byte: 20}, EOF: true})
	_, _ = p.take()
	require.Equal(t, 1, st.Taken, "the cursor stays at the page start until it is used up")
	require.False(t, st.EOF)
	_, _ = p.take()
	require.Equal(t, activities.BatchCursor{Index: 2, Byte: 20}, st.Cursor)
	require.Zero(t, st.Taken)
	require.True(t, st.EOF)
	require.False(t, p.loaded)
}
