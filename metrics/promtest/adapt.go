package promtest

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"
)

// Target is one scrape target and its target labels (host, cluster).
type Target struct {
	Addr   string // host:port
	Labels map[string]string
}

// AdaptConfig returns the prometheus.yml at path, which must hold exactly
// one scrape job, Job with honor_labels (as deploy/prometheus/prometheus.yml
// does), with its targets replaced by targets, its rule files by ruleFiles
// (made absolute) and every interval set to interval (default 1s).
// Everything else, relabelling included, is kept: the shipped scrape
// configuration itself is what a test then exercises.
func AdaptConfig(path string, targets []Target, ruleFiles []string, interval time.Duration) ([]byte, error) {
	if interval <= 0 {
		interval = time.Second
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scrape config: %w", err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	jobs, _ := cfg["scrape_configs"].([]any)
	if len(jobs) != 1 {
		return nil, fmt.Errorf("%s: want one scrape config, got %d", path, len(jobs))
	}
	job, _ := jobs[0].(map[string]any)
	if job["job_name"] != Job || job["honor_labels"] != true {
		return nil, fmt.Errorf("%s: job_name %v honor_labels %v, want %s and true", path, job["job_name"], job["honor_labels"], Job)
	}
	static := make([]any, 0, len(targets))
	for _, tg := range targets {
		sc := map[string]any{"targets": []string{tg.Addr}}
		if len(tg.Labels) > 0 {
			sc["labels"] = tg.Labels
		}
		static = append(static, sc)
	}
	job["static_configs"] = static
	job["scrape_interval"] = interval.String()
	job["scrape_timeout"] = interval.String()
	rules := make([]string, 0, len(ruleFiles))
	for _, f := range ruleFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, fmt.Errorf("rule file %s: %w", f, err)
		}
		rules = append(rules, abs)
	}
	cfg["rule_files"] = rules
	cfg["global"] = map[string]any{"scrape_interval": interval.String(), "evaluation_interval": interval.String()}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode scrape config: %w", err)
	}
	return out, nil
}
