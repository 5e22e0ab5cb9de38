// Package grpctest holds what the test gRPC server and client share: a codec
// that passes message bytes through unchanged, so no protobuf code
// generation is needed.
package grpctest

import "fmt"

// RawCodec marshals *[]byte and []byte as themselves.
type RawCodec struct{}

func (RawCodec) Name() string { return "proto" }

func (RawCodec) Marshal(v any) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		return b, nil
	case *[]byte:
		return *b, nil
	}
	return nil, fmt.Errorf("rawcodec: cannot marshal %T", v)
}

func (RawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawcodec: cannot unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}
