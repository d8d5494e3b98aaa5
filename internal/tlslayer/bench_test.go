package tlslayer

import (
	"fmt"
	"testing"
)

// BenchmarkDecryptEncrypt is the loop's steady state for an echo: Decrypt
// one record of size bytes, Encrypt the plaintext back, buffers reused.
// The client's records are made in batches with the timer stopped (a
// record can be decrypted once only).
func BenchmarkDecryptEncrypt(b *testing.B) {
	p := getPKI(b)
	for _, v := range versions {
		for _, size := range []int{64, 4000} {
			b.Run(fmt.Sprintf("%s/%dB", v.name, size), func(b *testing.B) {
				pr := mustPair(b, p.ServerConfig(false), p.ClientConfig(v.v))
				pr.echo(b, []byte("warm up"))
				const batch = 512
				plain := make([]byte, 32<<10)
				dst := make([]byte, 0, 32<<10)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for done := 0; done < b.N; {
					b.StopTimer()
					recs := records(b, pr, min(batch, b.N-done), size)
					b.StartTimer()
					for _, rec := range recs {
						n, _, err := pr.s.Decrypt(rec, plain)
						if n != size || err != nil {
							b.Fatalf("Decrypt: %d, %v", n, err)
						}
						dst, err = pr.s.Encrypt(dst[:0], plain[:n])
						if err != nil {
							b.Fatal(err)
						}
					}
					done += len(recs)
				}
			})
		}
	}
}
