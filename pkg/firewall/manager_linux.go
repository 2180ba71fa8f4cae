package firewall

import (
	"context"
	"fmt"
)

// New returns the Manager of mode, probing the tools it needs once.
func New(ctx context.Context, mode Mode, opts Options) (Manager, error) {
	switch mode {
	case ModeIPTables:
		m, err := NewIPTables(ctx, opts)
		if err != nil {
			return nil, err
		}
		return m, nil
	case ModeNFTables:
		m, err := NewNFTables(ctx, opts)
		if err != nil {
			return nil, err
		}
		return m, nil
	}
	return nil, fmt.Errorf("unknown firewall mode %q (want %q or %q)", mode, ModeIPTables, ModeNFTables)
}
