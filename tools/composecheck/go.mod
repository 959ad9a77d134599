module github.com/herald-events/herald/tools/composecheck

go 1.26.8

require (
	github.com/compose-spec/compose-go/v2 v2.16.2
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.1 // indirect
	golang.org/x/text v0.14.0 // indirect
)
