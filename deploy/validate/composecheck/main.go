// composecheck loads a compose file the way `docker compose config` does (compose-go: the compose
// specification's JSON schema, interpolation, references between services, volumes and networks) and
// fails on any error, on a service that depends on an undefined one, and on a variable that is neither
// set in the env file nor given a default or a required-error in the file.
//
//	composecheck -env deploy/compose/.env.example deploy/compose/compose.yaml
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

func main() {
	envFile := flag.String("env", "", "env file whose variables count as defined")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: composecheck -env FILE compose.yaml")
		os.Exit(2)
	}
	if err := check(flag.Arg(0), *envFile); err != nil {
		fmt.Fprintln(os.Stderr, "composecheck:", err)
		os.Exit(1)
	}
}

func check(file, envFile string) error {
	env := map[string]string{}
	if envFile != "" {
		values, err := dotenv.GetEnvFromFile(map[string]string{}, []string{envFile})
		if err != nil {
			return fmt.Errorf("%s: %w", envFile, err)
		}
		env = values
	}
	content, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var raw map[string]interface{}
	if err := yaml.Unmarshal(content, &raw); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	var undefined []string
	for name, variable := range template.ExtractVariables(raw, template.DefaultPattern) {
		if _, ok := env[name]; ok || variable.DefaultValue != "" || variable.Required {
			continue
		}
		undefined = append(undefined, name)
	}
	if len(undefined) > 0 {
		sort.Strings(undefined)
		return fmt.Errorf("%s: variables without a value, a default or a required-error: %v", file, undefined)
	}
	dir, _ := filepath.Abs(filepath.Dir(file))
	details := types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: file, Content: content}},
		Environment: env,
	}
	project, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("footfall", true)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for _, service := range project.Services {
		for dependency := range service.DependsOn {
			if _, ok := project.Services[dependency]; !ok {
				return fmt.Errorf("%s: service %q depends on undefined service %q", file, service.Name, dependency)
			}
		}
	}
	fmt.Printf("%s: %d services valid against the compose specification\n", file, len(project.Services))
	return nil
}
