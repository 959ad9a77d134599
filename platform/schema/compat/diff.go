package compat

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Rules reported by [Compare]. Those marked incompatible make a check fail.
const (
	PackageChanged             = "PACKAGE_CHANGED"                     // incompatible
	MessageAdded               = "MESSAGE_ADDED"                       // compatible
	MessageRemoved             = "MESSAGE_REMOVED"                     // incompatible
	FieldAdded                 = "FIELD_ADDED"                         // compatible
	FieldRemoved               = "FIELD_REMOVED"                       // compatible
	FieldNameChanged           = "FIELD_NAME_CHANGED"                  // compatible
	FieldKindChanged           = "FIELD_KIND_CHANGED"                  // incompatible
	FieldScalarKindChanged     = "FIELD_SCALAR_KIND_CHANGED"           // incompatible across wire groups
	FieldNamedTypeChanged      = "FIELD_NAMED_TYPE_CHANGED"            // incompatible
	FieldNumericLabelChanged   = "FIELD_NUMERIC_LABEL_CHANGED"         // incompatible
	FieldStringOrBytesLabel    = "FIELD_STRING_OR_BYTES_LABEL_CHANGED" // compatible
	RequiredFieldAdded         = "REQUIRED_FIELD_ADDED"                // incompatible
	RequiredFieldRemoved       = "REQUIRED_FIELD_REMOVED"              // incompatible
	OneofAdded                 = "ONEOF_ADDED"                         // compatible
	OneofRemoved               = "ONEOF_REMOVED"                       // compatible
	OneofFieldAdded            = "ONEOF_FIELD_ADDED"                   // compatible
	OneofFieldRemoved          = "ONEOF_FIELD_REMOVED"                 // incompatible
	OneofFieldMovedToTopLevel  = "ONEOF_FIELD_MOVED_TO_TOP_LEVEL"      // compatible
	MultipleFieldsMovedToOneof = "MULTIPLE_FIELDS_MOVED_TO_ONEOF"      // incompatible
	FieldMovedToExistingOneof  = "FIELD_MOVED_TO_EXISTING_ONEOF"       // incompatible
)

// wireGroup numbers the groups of scalar kinds that share a wire encoding
// and may replace each other; kinds outside every group get 0.
func wireGroup(k protoreflect.Kind) int {
	switch k {
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Uint32Kind, protoreflect.Uint64Kind,
		protoreflect.BoolKind, protoreflect.EnumKind:
		return 1
	case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
		return 2
	case protoreflect.StringKind, protoreflect.BytesKind:
		return 3
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind:
		return 4
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
		return 5
	}
	return 0
}

// Compare lists the differences from original to update, judged for a
// reader using update on data written with original.
//
// Messages are matched by their name relative to the package, level by
// level (a message moved into or out of another one is removed and added).
// Fields are matched by number across the whole message, whatever oneof
// they belong to. A field whose type is declared in another file (an
// import) is compared with the type's structure, not its package: the
// same message moved to another file or package reads the same bytes,
// while a changed field inside it is reported at that field and makes the
// referring field FIELD_NAMED_TYPE_CHANGED.
func Compare(original, update protoreflect.FileDescriptor) []Difference {
	c := &comparer{orig: original, upd: update, referenced: map[[2]protoreflect.FullName]refState{}}
	if original.Package() != update.Package() {
		c.add(PackageChanged, string(update.Package()), false, fmt.Sprintf("package %s → %s", original.Package(), update.Package()))
	}
	c.messages(original.Messages(), update.Messages())
	slices.SortStableFunc(c.out, func(a, b Difference) int { return strings.Compare(a.Path, b.Path) })
	return c.out
}

// refState is the state of the structural comparison of a pair of
// referenced message types.
type refState int

const (
	refInProgress refState = iota + 1
	refCompatible
	refIncompatible
)

type comparer struct {
	orig, upd protoreflect.FileDescriptor
	// referenced holds the verdicts of the referenced message types
	// compared so far, by original and update full name; a pair in
	// progress is taken as compatible, which ends recursive types.
	referenced map[[2]protoreflect.FullName]refState
	out        []Difference
}

func (c *comparer) add(rule, path string, compatible bool, detail string) {
	c.out = append(c.out, Difference{Rule: rule, Path: path, Compatible: compatible, Detail: detail})
}

// messages matches two lists of sibling messages by name and compares the
// pairs, with their nested messages. Map entries are part of their field
// and left out.
func (c *comparer) messages(oms, ums protoreflect.MessageDescriptors) {
	for i := range oms.Len() {
		om := oms.Get(i)
		if om.IsMapEntry() {
			continue
		}
		um := ums.ByName(om.Name())
		if um == nil || um.IsMapEntry() {
			c.add(MessageRemoved, string(om.FullName()), false, "message removed")
			continue
		}
		c.message(om, um)
		c.messages(om.Messages(), um.Messages())
	}
	for i := range ums.Len() {
		um := ums.Get(i)
		if um.IsMapEntry() {
			continue
		}
		if om := oms.ByName(um.Name()); om == nil || om.IsMapEntry() {
			c.add(MessageAdded, string(um.FullName()), true, "message added")
		}
	}
}

// realOneof returns the oneof a field belongs to, ignoring the synthetic
// oneofs of proto3 optional fields.
func realOneof(f protoreflect.FieldDescriptor) protoreflect.OneofDescriptor {
	if o := f.ContainingOneof(); o != nil && !o.IsSynthetic() {
		return o
	}
	return nil
}

// oneofName is the name of a field's real oneof, "" when it has none.
func oneofName(f protoreflect.FieldDescriptor) protoreflect.Name {
	if o := realOneof(f); o != nil {
		return o.Name()
	}
	return ""
}

func fieldPath(md protoreflect.MessageDescriptor, f protoreflect.FieldDescriptor) string {
	return string(md.FullName()) + "." + string(f.Name())
}

// message compares the fields and oneofs of two versions of a message.
// Oneofs are matched by name, fields by number wherever they sit, so that
// renaming, merging or deleting a oneof hides no change to its fields.
func (c *comparer) message(om, um protoreflect.MessageDescriptor) {
	ofs, ufs := om.Fields(), um.Fields()
	oos, uos := realOneofs(om), realOneofs(um)

	// A oneof gone by name with none of its fields left anywhere was
	// deleted whole: its fields are gone like any removed field.
	deleted := map[protoreflect.Name]bool{}
	for name, oo := range oos {
		if uos[name] != nil {
			continue
		}
		survives := false
		for i := range oo.Fields().Len() {
			if ufs.ByNumber(oo.Fields().Get(i).Number()) != nil {
				survives = true
				break
			}
		}
		if !survives {
			deleted[name] = true
		}
	}

	// A oneof of the update may only gather fields that were exclusive
	// before: fields of one earlier oneof, or a single field from outside
	// any oneof. New fields do not count, old data never set them.
	for i := range um.Oneofs().Len() {
		uo := um.Oneofs().Get(i)
		if uo.IsSynthetic() {
			continue
		}
		origins := map[string]bool{}
		topLevel := 0
		var moved protoreflect.FieldDescriptor
		for j := range uo.Fields().Len() {
			uf := uo.Fields().Get(j)
			of := ofs.ByNumber(uf.Number())
			if of == nil {
				continue
			}
			if name := oneofName(of); name != "" {
				origins["oneof "+string(name)] = true
			} else {
				origins[fmt.Sprintf("field %d", of.Number())] = true
				topLevel++
			}
			if moved == nil && oneofName(of) != uo.Name() {
				moved = uf
			}
		}
		switch {
		case len(origins) < 2:
		case topLevel > 1:
			c.add(MultipleFieldsMovedToOneof, fieldPath(um, moved), false,
				fmt.Sprintf("%d existing fields moved into oneof %s", topLevel, uo.Name()))
		default:
			c.add(FieldMovedToExistingOneof, fieldPath(um, moved), false,
				fmt.Sprintf("field %d moved into oneof %s, with fields it was not exclusive with before", moved.Number(), uo.Name()))
		}
	}

	for name, oo := range oos {
		if uos[name] == nil {
			c.add(OneofRemoved, string(oo.FullName()), true, "oneof removed")
		}
	}
	for name, uo := range uos {
		if oos[name] == nil {
			c.add(OneofAdded, string(uo.FullName()), true, "oneof added")
		}
	}

	for i := range ofs.Len() {
		of := ofs.Get(i)
		uf := ufs.ByNumber(of.Number())
		if uf == nil {
			path := fieldPath(om, of)
			switch oo := oneofName(of); {
			case of.Cardinality() == protoreflect.Required:
				c.add(RequiredFieldRemoved, path, false, fmt.Sprintf("required field %d removed", of.Number()))
			case oo != "" && !deleted[oo]:
				c.add(OneofFieldRemoved, path, false, fmt.Sprintf("field %d removed from oneof %s", of.Number(), oo))
			default:
				c.add(FieldRemoved, path, true, fmt.Sprintf("field %d removed", of.Number()))
			}
			continue
		}
		path := fieldPath(um, uf)
		if of.Name() != uf.Name() {
			c.add(FieldNameChanged, path, true, fmt.Sprintf("field %d renamed %s → %s", of.Number(), of.Name(), uf.Name()))
		}
		if oo := oneofName(of); oo != "" && oneofName(uf) == "" {
			c.add(OneofFieldMovedToTopLevel, path, true, fmt.Sprintf("field %d moved out of oneof %s", of.Number(), oo))
		}
		c.field(path, of, uf)
	}
	for i := range ufs.Len() {
		uf := ufs.Get(i)
		if ofs.ByNumber(uf.Number()) != nil {
			continue
		}
		path := fieldPath(um, uf)
		switch {
		case uf.Cardinality() == protoreflect.Required:
			c.add(RequiredFieldAdded, path, false, fmt.Sprintf("required field %d added", uf.Number()))
		case realOneof(uf) != nil:
			c.add(OneofFieldAdded, path, true, fmt.Sprintf("field %d added to oneof %s", uf.Number(), realOneof(uf).Name()))
		default:
			c.add(FieldAdded, path, true, fmt.Sprintf("field %d added", uf.Number()))
		}
	}
}

// realOneofs maps the oneofs of a message, without synthetic ones, by name.
func realOneofs(md protoreflect.MessageDescriptor) map[protoreflect.Name]protoreflect.OneofDescriptor {
	out := map[protoreflect.Name]protoreflect.OneofDescriptor{}
	for i := range md.Oneofs().Len() {
		if o := md.Oneofs().Get(i); !o.IsSynthetic() {
			out[o.Name()] = o
		}
	}
	return out
}

type category int

const (
	scalarField category = iota
	messageField
	mapField
)

func categoryOf(f protoreflect.FieldDescriptor) category {
	switch {
	case f.IsMap():
		return mapField
	case f.Kind() == protoreflect.MessageKind || f.Kind() == protoreflect.GroupKind:
		return messageField
	}
	return scalarField
}

var categoryNames = map[category]string{scalarField: "scalar", messageField: "message", mapField: "map"}

func (c *comparer) field(path string, of, uf protoreflect.FieldDescriptor) {
	oc, uc := categoryOf(of), categoryOf(uf)
	if oc != uc {
		c.add(FieldKindChanged, path, false, fmt.Sprintf("%s → %s", categoryNames[oc], categoryNames[uc]))
		return
	}
	switch oc {
	case mapField:
		c.valueType(path, of.MapKey(), uf.MapKey())
		c.valueType(path, of.MapValue(), uf.MapValue())
		return
	default:
		c.valueType(path, of, uf)
	}
	switch {
	case of.Cardinality() == uf.Cardinality():
	case of.Cardinality() == protoreflect.Required:
		c.add(RequiredFieldRemoved, path, false, "required field made "+cardName(uf))
	case uf.Cardinality() == protoreflect.Required:
		c.add(RequiredFieldAdded, path, false, cardName(of)+" field made required")
	case lengthDelimited(of.Kind()) && lengthDelimited(uf.Kind()):
		c.add(FieldStringOrBytesLabel, path, true, cardName(of)+" → "+cardName(uf))
	default:
		c.add(FieldNumericLabelChanged, path, false, cardName(of)+" → "+cardName(uf))
	}
}

func cardName(f protoreflect.FieldDescriptor) string {
	switch f.Cardinality() {
	case protoreflect.Repeated:
		return "repeated"
	case protoreflect.Required:
		return "required"
	}
	return "singular"
}

func lengthDelimited(k protoreflect.Kind) bool {
	return k == protoreflect.StringKind || k == protoreflect.BytesKind || k == protoreflect.MessageKind
}

// valueType compares the types of two fields (or map keys/values) of the
// same category.
func (c *comparer) valueType(path string, of, uf protoreflect.FieldDescriptor) {
	ok, uk := of.Kind(), uf.Kind()
	switch {
	case ok == protoreflect.MessageKind || ok == protoreflect.GroupKind:
		if uk != protoreflect.MessageKind && uk != protoreflect.GroupKind {
			c.add(FieldKindChanged, path, false, fmt.Sprintf("message → %s", uk))
			return
		}
		c.messageType(path, of.Message(), uf.Message())
	case uk == protoreflect.MessageKind || uk == protoreflect.GroupKind:
		c.add(FieldKindChanged, path, false, fmt.Sprintf("%s → message", ok))
	case ok != uk:
		// Enums are varints like the other kinds of their group, so one
		// enum type may replace another, as in Confluent's registry.
		if g := wireGroup(ok); g != 0 && g == wireGroup(uk) {
			return
		}
		c.add(FieldScalarKindChanged, path, false, fmt.Sprintf("%s → %s", ok, uk))
	}
}

// localName is a type's full name without the package of the file that
// declares it: "Money" for herald.money.v1.Money, "Outer.Inner" for a
// nested message.
func localName(md protoreflect.MessageDescriptor) string {
	name := string(md.FullName())
	if pkg := string(md.ParentFile().Package()); pkg != "" {
		name = strings.TrimPrefix(name, pkg+".")
	}
	return name
}

// messageType compares the message types of a field. Types are matched by
// local name. Two types declared in the compared files are compared with
// the rest of the files; any other pair (an import on either side) is
// compared structurally here, once.
func (c *comparer) messageType(path string, om, um protoreflect.MessageDescriptor) {
	if localName(om) != localName(um) {
		c.add(FieldNamedTypeChanged, path, false, fmt.Sprintf("%s → %s", om.FullName(), um.FullName()))
		return
	}
	if om.ParentFile().Path() == c.orig.Path() && um.ParentFile().Path() == c.upd.Path() {
		return
	}
	if !c.sameStructure(om, um) {
		name := string(om.FullName())
		if om.FullName() != um.FullName() {
			name += " → " + string(um.FullName())
		}
		c.add(FieldNamedTypeChanged, path, false, fmt.Sprintf("referenced type %s changed incompatibly", name))
	}
}

// sameStructure compares two referenced message types, their fields and
// nested messages, adds what differs and reports whether a reader of um
// still reads data written with om.
func (c *comparer) sameStructure(om, um protoreflect.MessageDescriptor) bool {
	key := [2]protoreflect.FullName{om.FullName(), um.FullName()}
	switch c.referenced[key] {
	case refInProgress, refCompatible:
		return true
	case refIncompatible:
		return false
	}
	c.referenced[key] = refInProgress
	start := len(c.out)
	c.message(om, um)
	c.messages(om.Messages(), um.Messages())
	state := refCompatible
	if slices.ContainsFunc(c.out[start:], func(d Difference) bool { return !d.Compatible }) {
		state = refIncompatible
	}
	c.referenced[key] = state
	return state == refCompatible
}
