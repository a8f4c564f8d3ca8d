package config_test

import (
	"strings"
	"testing"

	"github.com/mautic-sync/mautic-sync/config"
)

func TestPartitionDefaultsUnpartitioned(t *testing.T) {
	setValid(t)
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Partition.Partitioned() || cfg.Partition.Count != 0 || cfg.Partition.Mode != "elastic" || cfg.Partition.Index != -1 || cfg.Replicas != 1 {
		t.Errorf("defaults %+v, replicas %d: want unpartitioned, elastic, index -1, one replica", cfg.Partition, cfg.Replicas)
	}
	if cfg.ShareRateBudget() {
		t.Error("the rate budget is shared without a budget")
	}
}

func TestPartitionSettingsValidate(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want string // "" for valid
	}{
		{"elastic", map[string]string{"PARTITIONS": "6"}, ""},
		{"static", map[string]string{"PARTITIONS": "6", "PARTITION_MODE": "static", "REPLICA_COUNT": "3", "REPLICA_INDEX": "2"}, ""},
		{"static from the host name", map[string]string{"PARTITIONS": "6", "PARTITION_MODE": "static", "REPLICA_COUNT": "3"}, ""},
		{"static without a count", map[string]string{"PARTITIONS": "6", "PARTITION_MODE": "static"}, "REPLICA_COUNT must be between 1 and PARTITIONS (6)"},
		{"static index out of range", map[string]string{"PARTITIONS": "6", "PARTITION_MODE": "static", "REPLICA_COUNT": "3", "REPLICA_INDEX": "3"}, "REPLICA_INDEX must be -1"},
		{"more replicas than partitions", map[string]string{"PARTITIONS": "2", "PARTITION_MODE": "static", "REPLICA_COUNT": "3"}, "REPLICA_COUNT must be between 1 and PARTITIONS (2)"},
		{"unknown mode", map[string]string{"PARTITIONS": "2", "PARTITION_MODE": "sharded"}, `PARTITION_MODE="sharded"`},
		{"negative", map[string]string{"PARTITIONS": "-1"}, "PARTITIONS must be between 0"},
		{"too many", map[string]string{"PARTITIONS": "1000"}, "PARTITIONS must be between 0"},
		{"short takeover", map[string]string{"PARTITIONS": "2", "PARTITION_TAKEOVER": "500ms"}, "PARTITION_TAKEOVER must be at least 2s"},
		{"bad bucket", map[string]string{"PARTITIONS": "2", "PARTITION_BUCKET": "a.b"}, "PARTITION_BUCKET"},
		{"two subjects", map[string]string{"PARTITIONS": "2", "STREAM_SUBJECTS": "mautic.contacts.>,crm.contacts.>"}, "exactly one subject of the form <prefix>.>"},
		{"subjects ending in *", map[string]string{"PARTITIONS": "2", "STREAM_SUBJECTS": "mautic.contacts.*"}, "exactly one subject of the form <prefix>.>"},
		{"two subjects unpartitioned", map[string]string{"STREAM_SUBJECTS": "mautic.contacts.>,crm.contacts.>"}, ""},
		{"replicas", map[string]string{"JETSTREAM_REPLICAS": "3"}, ""},
		{"replicas out of range", map[string]string{"JETSTREAM_REPLICAS": "7"}, "JETSTREAM_REPLICAS must be between 1 and 5"},
		{"rate shared", map[string]string{"MAUTIC_RATE_SHARED": "maybe"}, `MAUTIC_RATE_SHARED="maybe"`},
		{"rate bucket", map[string]string{"MAUTIC_RATE_LIMIT": "100", "MAUTIC_RATE_SHARED": "true", "MAUTIC_RATE_BUCKET": ""}, "MAUTIC_RATE_BUCKET"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			setValid(t)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			_, err := config.Load()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("want valid, got %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestPartitionPrefix(t *testing.T) {
	if p, err := config.PartitionPrefix([]string{"mautic.contacts.>"}); err != nil || p != "mautic.contacts" {
		t.Errorf("PartitionPrefix = %q, %v", p, err)
	}
	for _, bad := range [][]string{nil, {">"}, {"a.*.>"}, {"a.b", "c.>"}} {
		if _, err := config.PartitionPrefix(bad); err == nil {
			t.Errorf("PartitionPrefix(%q) accepted", bad)
		}
	}
}

// TestShareRateBudget: shared when partitioned and the replicas count in
// one Mautic bucket (basic auth, a shared refresh token), not with client
// credentials (a token, and a bucket, per replica), unless forced.
func TestShareRateBudget(t *testing.T) {
	base := config.Config{Partition: config.Partition{Count: 4}, Mautic: config.Mautic{RateLimit: 100, RateShared: "auto", Username: "u", Password: "p"}}
	check := func(name string, c config.Config, want bool) {
		t.Helper()
		if got := c.ShareRateBudget(); got != want {
			t.Errorf("%s: ShareRateBudget = %v, want %v", name, got, want)
		}
	}
	check("basic, partitioned", base, true)
	c := base
	c.Partition.Count = 0
	check("basic, one replica", c, false)
	c.Mautic.RateShared = "true"
	check("basic, one replica, forced", c, true)
	c = base
	c.Mautic.Username, c.Mautic.Password, c.Mautic.ClientID, c.Mautic.ClientSecret = "", "", "1_a", "s"
	check("client credentials", c, false)
	c.Mautic.RefreshToken = "r"
	check("refresh token", c, true)
	c = base
	c.Mautic.RateShared = "false"
	check("never", c, false)
	c = base
	c.Mautic.RateLimit = 0
	check("no budget", c, false)
}
