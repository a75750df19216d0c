package main

import (
	"math"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// The OTLP trace request, encoded by hand with protowire: the generated OTLP types (and the
// SDK's exporter built on them, with gRPC) would add 3.3 MB to the binary. Field numbers
// are those of opentelemetry-proto: collector/trace/v1/trace_service.proto,
// trace/v1/trace.proto, common/v1/common.proto and resource/v1/resource.proto. Fields with
// their zero value are left out, as proto3 encoders do.

// ExportTraceServiceRequest, TracesData
const fRequestResourceSpans protowire.Number = 1

// ResourceSpans
const (
	fResourceSpansResource  protowire.Number = 1
	fResourceSpansScopes    protowire.Number = 2
	fResourceSpansSchemaURL protowire.Number = 3
)

// Resource
const fResourceAttributes protowire.Number = 1

// ScopeSpans
const (
	fScopeSpansScope     protowire.Number = 1
	fScopeSpansSpans     protowire.Number = 2
	fScopeSpansSchemaURL protowire.Number = 3
)

// InstrumentationScope
const (
	fScopeName       protowire.Number = 1
	fScopeVersion    protowire.Number = 2
	fScopeAttributes protowire.Number = 3
)

// Span
const (
	fSpanTraceID           protowire.Number = 1
	fSpanSpanID            protowire.Number = 2
	fSpanTraceState        protowire.Number = 3
	fSpanParentSpanID      protowire.Number = 4
	fSpanName              protowire.Number = 5
	fSpanKind              protowire.Number = 6
	fSpanStart             protowire.Number = 7 // fixed64
	fSpanEnd               protowire.Number = 8 // fixed64
	fSpanAttributes        protowire.Number = 9
	fSpanDroppedAttributes protowire.Number = 10
	fSpanEvents            protowire.Number = 11
	fSpanDroppedEvents     protowire.Number = 12
	fSpanLinks             protowire.Number = 13
	fSpanDroppedLinks      protowire.Number = 14
	fSpanStatus            protowire.Number = 15
	fSpanFlags             protowire.Number = 16 // fixed32
)

// Span.Event
const (
	fEventTime              protowire.Number = 1 // fixed64
	fEventName              protowire.Number = 2
	fEventAttributes        protowire.Number = 3
	fEventDroppedAttributes protowire.Number = 4
)

// Span.Link
const (
	fLinkTraceID           protowire.Number = 1
	fLinkSpanID            protowire.Number = 2
	fLinkTraceState        protowire.Number = 3
	fLinkAttributes        protowire.Number = 4
	fLinkDroppedAttributes protowire.Number = 5
	fLinkFlags             protowire.Number = 6 // fixed32
)

// Status
const (
	fStatusMessage protowire.Number = 2
	fStatusCode    protowire.Number = 3
)

// Status.StatusCode values (they differ from codes.Code's).
const (
	statusCodeOK    = 1
	statusCodeError = 2
)

// KeyValue, AnyValue, ArrayValue, KeyValueList
const (
	fKeyValueKey       protowire.Number = 1
	fKeyValueValue     protowire.Number = 2
	fAnyString         protowire.Number = 1
	fAnyBool           protowire.Number = 2
	fAnyInt            protowire.Number = 3
	fAnyDouble         protowire.Number = 4 // fixed64
	fAnyArray          protowire.Number = 5
	fAnyKvlist         protowire.Number = 6
	fAnyBytes          protowire.Number = 7
	fArrayValues       protowire.Number = 1
	fKeyValueListValue protowire.Number = 1
)

// Span flags: the W3C trace flags in the low byte, and whether the parent (or, in a link, the
// linked span) is known to be remote.
const (
	spanFlagsHasIsRemote = 0x100
	spanFlagsIsRemote    = 0x200
)

// scopeKey identifies an instrumentation scope for grouping.
type scopeKey struct {
	name, version, schemaURL string
	attrs                    attribute.Distinct
}

// resourceKey identifies a resource for grouping.
type resourceKey struct {
	schemaURL string
	attrs     attribute.Distinct
}

type scopeGroup struct {
	scope instrumentation.Scope
	spans []sdktrace.ReadOnlySpan
}

type resourceGroup struct {
	res    *resource.Resource
	scopes []*scopeGroup
	index  map[scopeKey]*scopeGroup
}

// appendTraceRequest appends the ExportTraceServiceRequest of spans to b: one ResourceSpans per
// resource and in it one ScopeSpans per instrumentation scope, in the order they first appear.
func appendTraceRequest(b []byte, spans []sdktrace.ReadOnlySpan) []byte {
	var groups []*resourceGroup
	index := map[resourceKey]*resourceGroup{}
	for _, s := range spans {
		res := s.Resource()
		rk := resourceKey{schemaURL: res.SchemaURL(), attrs: res.Equivalent()}
		rg := index[rk]
		if rg == nil {
			rg = &resourceGroup{res: res, index: map[scopeKey]*scopeGroup{}}
			index[rk] = rg
			groups = append(groups, rg)
		}
		sc := s.InstrumentationScope()
		sk := scopeKey{name: sc.Name, version: sc.Version, schemaURL: sc.SchemaURL, attrs: sc.Attributes.Equivalent()}
		sg := rg.index[sk]
		if sg == nil {
			sg = &scopeGroup{scope: sc}
			rg.index[sk] = sg
			rg.scopes = append(rg.scopes, sg)
		}
		sg.spans = append(sg.spans, s)
	}
	for _, rg := range groups {
		b = appendMessage(b, fRequestResourceSpans, func(b []byte) []byte { return appendResourceSpans(b, rg) })
	}
	return b
}

func appendResourceSpans(b []byte, rg *resourceGroup) []byte {
	b = appendMessage(b, fResourceSpansResource, func(b []byte) []byte {
		return appendAttributes(b, fResourceAttributes, rg.res.Attributes())
	})
	for _, sg := range rg.scopes {
		b = appendMessage(b, fResourceSpansScopes, func(b []byte) []byte {
			b = appendMessage(b, fScopeSpansScope, func(b []byte) []byte {
				b = appendString(b, fScopeName, sg.scope.Name)
				b = appendString(b, fScopeVersion, sg.scope.Version)
				return appendAttributes(b, fScopeAttributes, sg.scope.Attributes.ToSlice())
			})
			for _, s := range sg.spans {
				b = appendMessage(b, fScopeSpansSpans, func(b []byte) []byte { return appendSpan(b, s) })
			}
			return appendString(b, fScopeSpansSchemaURL, sg.scope.SchemaURL)
		})
	}
	return appendString(b, fResourceSpansSchemaURL, rg.res.SchemaURL())
}

func appendSpan(b []byte, s sdktrace.ReadOnlySpan) []byte {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = appendBytes(b, fSpanTraceID, tid[:])
	b = appendBytes(b, fSpanSpanID, sid[:])
	b = appendString(b, fSpanTraceState, sc.TraceState().String())
	if p := s.Parent(); p.HasSpanID() {
		pid := p.SpanID()
		b = appendBytes(b, fSpanParentSpanID, pid[:])
	}
	b = appendString(b, fSpanName, s.Name())
	b = appendVarint(b, fSpanKind, uint64(spanKind(s.SpanKind())))
	b = appendFixed64(b, fSpanStart, unixNano(s.StartTime()))
	b = appendFixed64(b, fSpanEnd, unixNano(s.EndTime()))
	b = appendAttributes(b, fSpanAttributes, s.Attributes())
	b = appendVarint(b, fSpanDroppedAttributes, uint64(max(s.DroppedAttributes(), 0)))
	for _, e := range s.Events() {
		b = appendMessage(b, fSpanEvents, func(b []byte) []byte {
			b = appendFixed64(b, fEventTime, unixNano(e.Time))
			b = appendString(b, fEventName, e.Name)
			b = appendAttributes(b, fEventAttributes, e.Attributes)
			return appendVarint(b, fEventDroppedAttributes, uint64(max(e.DroppedAttributeCount, 0)))
		})
	}
	b = appendVarint(b, fSpanDroppedEvents, uint64(max(s.DroppedEvents(), 0)))
	for _, l := range s.Links() {
		b = appendMessage(b, fSpanLinks, func(b []byte) []byte {
			ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
			b = appendBytes(b, fLinkTraceID, ltid[:])
			b = appendBytes(b, fLinkSpanID, lsid[:])
			b = appendString(b, fLinkTraceState, l.SpanContext.TraceState().String())
			b = appendAttributes(b, fLinkAttributes, l.Attributes)
			b = appendVarint(b, fLinkDroppedAttributes, uint64(max(l.DroppedAttributeCount, 0)))
			return appendFixed32(b, fLinkFlags, spanFlags(l.SpanContext.TraceFlags(), l.SpanContext.IsRemote()))
		})
	}
	b = appendVarint(b, fSpanDroppedLinks, uint64(max(s.DroppedLinks(), 0)))
	if st := s.Status(); st.Code != codes.Unset || st.Description != "" {
		b = appendMessage(b, fSpanStatus, func(b []byte) []byte {
			b = appendString(b, fStatusMessage, st.Description)
			return appendVarint(b, fStatusCode, statusCode(st.Code))
		})
	}
	return appendFixed32(b, fSpanFlags, spanFlags(sc.TraceFlags(), s.Parent().IsRemote()))
}

// spanKind maps trace.SpanKind to Span.SpanKind (the same numbers; anything unknown is
// unspecified).
func spanKind(k trace.SpanKind) int {
	if k < trace.SpanKindUnspecified || k > trace.SpanKindConsumer {
		return 0
	}
	return int(k)
}

func statusCode(c codes.Code) uint64 {
	switch c {
	case codes.Ok:
		return statusCodeOK
	case codes.Error:
		return statusCodeError
	}
	return 0
}

func spanFlags(f trace.TraceFlags, remote bool) uint32 {
	flags := uint32(f) | spanFlagsHasIsRemote
	if remote {
		flags |= spanFlagsIsRemote
	}
	return flags
}

// unixNano returns t in nanoseconds since 1970, and 0 for a time before (such as the zero
// time.Time of a span never ended, whose UnixNano overflows).
func unixNano(t time.Time) uint64 {
	if t.Before(time.Unix(0, 0)) {
		return 0
	}
	return uint64(t.UnixNano())
}

// appendAttributes appends each attribute as a KeyValue in field num.
func appendAttributes(b []byte, num protowire.Number, kvs []attribute.KeyValue) []byte {
	for _, kv := range kvs {
		b = appendMessage(b, num, func(b []byte) []byte { return appendKeyValue(b, kv) })
	}
	return b
}

func appendKeyValue(b []byte, kv attribute.KeyValue) []byte {
	b = appendString(b, fKeyValueKey, string(kv.Key))
	return appendMessage(b, fKeyValueValue, func(b []byte) []byte { return appendAnyValue(b, kv.Value) })
}

// appendAnyValue appends the fields of an AnyValue holding v; an EMPTY value is an AnyValue
// with none set. Slices of the typed kinds are ArrayValues, as is SLICE; MAP is a KeyValueList.
// Unlike other fields, the value of a oneof is written even when it is the zero value.
func appendAnyValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		return appendBool(b, v.AsBool())
	case attribute.INT64:
		return appendInt(b, v.AsInt64())
	case attribute.FLOAT64:
		return appendDouble(b, v.AsFloat64())
	case attribute.STRING:
		return appendAnyString(b, v.AsString())
	case attribute.BYTESLICE:
		return appendBytes(b, fAnyBytes, v.AsByteSlice())
	case attribute.BOOLSLICE:
		return appendArray(b, v.AsBoolSlice(), appendBool)
	case attribute.INT64SLICE:
		return appendArray(b, v.AsInt64Slice(), appendInt)
	case attribute.FLOAT64SLICE:
		return appendArray(b, v.AsFloat64Slice(), appendDouble)
	case attribute.STRINGSLICE:
		return appendArray(b, v.AsStringSlice(), appendAnyString)
	case attribute.SLICE:
		return appendArray(b, v.AsSlice(), appendAnyValue)
	case attribute.MAP:
		return appendMessage(b, fAnyKvlist, func(b []byte) []byte {
			return appendAttributes(b, fKeyValueListValue, v.AsMap())
		})
	}
	return b
}

// appendArray appends an ArrayValue holding one AnyValue per element.
func appendArray[T any](b []byte, vs []T, value func([]byte, T) []byte) []byte {
	return appendMessage(b, fAnyArray, func(b []byte) []byte {
		for _, v := range vs {
			b = appendMessage(b, fArrayValues, func(b []byte) []byte { return value(b, v) })
		}
		return b
	})
}

// appendAnyString writes an AnyValue's string, even "" (a oneof's value is always written,
// unlike appendString's optional field).
func appendAnyString(b []byte, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(b, fAnyString, protowire.BytesType), s)
}

func appendBool(b []byte, v bool) []byte {
	return protowire.AppendVarint(protowire.AppendTag(b, fAnyBool, protowire.VarintType), protowire.EncodeBool(v))
}

func appendInt(b []byte, v int64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(b, fAnyInt, protowire.VarintType), uint64(v))
}

func appendDouble(b []byte, v float64) []byte {
	return protowire.AppendFixed64(protowire.AppendTag(b, fAnyDouble, protowire.Fixed64Type), math.Float64bits(v))
}

var lengthRoom [10]byte // the longest varint

// appendMessage appends field num holding the message that body appends. The body is written
// in place and then moved up to make room for its length.
func appendMessage(b []byte, num protowire.Number, body func([]byte) []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	start := len(b)
	b = body(b)
	n := len(b) - start
	size := protowire.SizeVarint(uint64(n))
	b = append(b, lengthRoom[:size]...)
	copy(b[start+size:], b[start:start+n])
	protowire.AppendVarint(b[start:start], uint64(n))
	return b
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendFixed64(protowire.AppendTag(b, num, protowire.Fixed64Type), v)
}

func appendFixed32(b []byte, num protowire.Number, v uint32) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendFixed32(protowire.AppendTag(b, num, protowire.Fixed32Type), v)
}
